"""The session journal: an append-only, checksummed log of every row a session file gets,
written and fsynced before the row goes to HDF5, so before it is acknowledged.

HDF5 is not crash-consistent: a kill inside its flush can leave a dataset unreadable
(``addr overflow``; docs/RELIABILITY.md measured it). The journal can be: each record is
``b"R"``, its length and CRC-32 (little-endian ``uint32`` each), then a msgpack map; a kill
mid-record leaves a torn tail that the next reader recognises (short, or a bad checksum)
and cuts off. Nothing after a bad record is trusted. numpy arrays travel as raw bytes with
their dtype and shape; nothing is ever unpickled.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

_HEAD = struct.Struct("<cII")
_MARK = b"R"
#: Longest record read back (a table append of 100,000 responses is far below it).
MAX_RECORD_BYTES = 256 << 20


def _pack(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OU":  # text columns
            return [str(v) for v in value.tolist()]
        array = np.ascontiguousarray(value)
        return {"__nd__": [array.dtype.str, list(array.shape), array.tobytes()]}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot journal {type(value).__name__}")


def _unpack(obj: dict[str, Any]) -> Any:
    if "__nd__" in obj and len(obj) == 1:
        dtype, shape, data = obj["__nd__"]
        return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
    return obj


class Journal:
    """Appends records to ``path`` (created if needed; a torn tail is cut off first)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            _, good = read_journal(self.path)
            if good < self.path.stat().st_size:  # a torn tail, or a damaged record:
                with self.path.open("rb") as journal:  # keep what follows for an expert
                    journal.seek(good)
                    self.path.with_name(self.path.name + ".bad").write_bytes(journal.read())
                os.truncate(self.path, good)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict[str, Any], sync: bool = True) -> None:
        """Write ``record``; with ``sync`` it is on the disk (fsync) when this returns."""
        payload = msgpack.packb(record, default=_pack, use_bin_type=True)
        frame = _HEAD.pack(_MARK, len(payload), zlib.crc32(payload)) + payload
        view = memoryview(frame)
        while view:
            view = view[os.write(self._fd, view) :]
        if sync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The intact records of ``path`` and the length in bytes they take; reading stops at
    the first torn or damaged record."""
    data = Path(path).read_bytes()
    records, offset = [], 0
    while offset + _HEAD.size <= len(data):
        mark, length, crc = _HEAD.unpack_from(data, offset)
        start, end = offset + _HEAD.size, offset + _HEAD.size + length
        if mark != _MARK or length > MAX_RECORD_BYTES or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(msgpack.unpackb(payload, object_hook=_unpack, raw=False))
        except (ValueError, TypeError, msgpack.UnpackException):
            break
        offset = end
    return records, offset
