"""Storage: the HDF5 session file (its whole schema lives in ``session_file``), the data
folder (``catalog``) and the generic column tables beneath them (``tables``). No other
module imports h5py for session data."""
