"""The acquisition server, in layers (docs/ARCHITECTURE.md); each imports only those below:

- ``server.http`` (FastAPI app, dashboard, live stream) and ``server.rig`` (ZeroMQ), wired
  together by ``server.serve``;
- ``server.sessions``: the session state machine, rounds, response bookkeeping, warnings,
  the manager and stored sessions;
- ``server.engine`` (generators, optimizers, the generation loop, building a run from
  settings, statistics, the generator pool) and
  ``server.storage`` (the HDF5 session file: the only code that touches h5py);
- ``protocol``, shared with the rig clients.

Nothing heavy is imported here; torch loads only when a generator or target is built.
"""

from importlib.metadata import PackageNotFoundError, version

try:  #: The software version, from the installed package's metadata (pyproject.toml).
    __version__ = version("xdream-rig")
except PackageNotFoundError:  # a checkout used from PYTHONPATH, never installed
    __version__ = "0+unknown"
