"""Storage: the HDF5 session file (its whole schema lives in ``session_file``), the data
folder (``catalog``) and the generic column tables beneath them (``tables``); NWB export
(``nwb_export``: what the session file holds as plain columns in ``export_contents``, written
by ``nwb_writer``, the only module importing pynwb). No other module imports h5py for
session data."""
