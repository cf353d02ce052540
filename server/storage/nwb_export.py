"""A session file as an NWB file (Neurodata Without Borders), the format labs archive in:
``xdream export --nwb`` and ``GET /api/sessions/{id}/session.nwb``. docs/nwb.md says what
goes where.

The session file is only read, through :class:`SessionFile`'s read-only handle: a file a
server is writing is locked by it, so a running session is exported from a consistent copy
(the HTTP route takes one between writes). The NWB file is written under a temporary name
and renamed when complete, so a failed export leaves nothing that looks finished.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from protocol.errors import ConfigError
from server.storage.export_contents import SubjectInfo, gather
from server.storage.records import SessionFileError
from server.storage.session_file import SessionFile

__all__ = ["ExportSummary", "NwbUnavailable", "SubjectInfo", "export_nwb", "require_nwb"]

INSTALL = "pip install 'xdream-rig[nwb]'"


class NwbUnavailable(ConfigError):
    """pynwb is not installed: NWB export is the ``nwb`` extra."""


def require_nwb() -> None:
    """NwbUnavailable unless pynwb is installed: a quick check, before any work is done
    (importing it takes a second)."""
    if importlib.util.find_spec("pynwb") is None:
        raise NwbUnavailable(f"NWB export needs pynwb, which is not installed: {INSTALL}")


def _writer() -> ModuleType:
    """The NWB writer, which imports pynwb (NwbUnavailable if that fails)."""
    try:
        return importlib.import_module("server.storage.nwb_writer")
    except ImportError as exc:
        raise NwbUnavailable(f"NWB export needs pynwb, which cannot be imported ({exc}): "
                             f"{INSTALL}") from None  # fmt: skip


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    path: Path
    images: int
    trials: int
    #: Responses in the file's responses and late_responses tables.
    responses: int


def export_nwb(session_file: Path, out: Path, subject: SubjectInfo | None = None) -> ExportSummary:
    """Write the session in ``session_file`` as a new NWB file ``out``; ``subject`` adds what
    NWB wants of the animal beyond the session's ``subject`` id (species, sex, age).

    NwbUnavailable without pynwb; ConfigError if ``out`` exists; SessionFileError if
    ``session_file`` is missing or cannot be read as a session file."""
    require_nwb()
    writer = _writer()
    session_file, out = Path(session_file), Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; choose a new name or remove it")
    if not session_file.is_file():
        raise SessionFileError(f"no session file at {session_file}")
    try:
        store = SessionFile.reopen(session_file, mode="r")
    except SessionFileError as exc:
        if "lock" not in str(exc):  # HDF5's words for a file a writer holds
            raise
        raise SessionFileError(
            f"{exc}: a server running this session holds it; download "
            f"/api/sessions/{session_file.stem}/session.nwb from that server instead"
        ) from None
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    try:
        contents = gather(store, subject or SubjectInfo())
        out.parent.mkdir(parents=True, exist_ok=True)
        writer.write(contents, partial)
        os.replace(partial, out)
    finally:
        store.close()
        partial.unlink(missing_ok=True)
    responses = contents.records.get("responses")
    return ExportSummary(
        out,
        images=len(contents.pictures),
        trials=0 if contents.trials is None else len(contents.trials["start_time"].data),
        responses=0 if responses is None else len(responses[1]["presentation_id"].data),
    )
