"""Tables in HDF5: one resizable dataset per column, appended along the first axis, and
optimizer state as plain datasets and attributes (never pickled).

These helpers know nothing of sessions; :mod:`server.storage.session_file` lays out a session
with them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import h5py
import numpy as np

_STR = h5py.string_dtype()


def append(group: h5py.Group, name: str, rows: Any, **create: Any) -> None:
    """Append ``rows`` to dataset ``name`` (created resizable on first use)."""
    rows = np.asarray(rows)
    if rows.dtype.kind in "UO":  # text: stored as variable-length UTF-8
        rows = rows.astype(object)
        create.setdefault("dtype", _STR)
    if name not in group:
        group.create_dataset(
            name,
            data=rows,
            maxshape=(None, *rows.shape[1:]),
            chunks=(max(1, min(len(rows), 1024 if rows.ndim == 1 else 1)), *rows.shape[1:]),
            **create,
        )
        return
    ds = group[name]
    ds.resize(ds.shape[0] + len(rows), axis=0)
    ds[-len(rows) :] = rows


def with_missing_columns(group: h5py.Group, columns: dict[str, Any]) -> dict[str, Any]:
    """``columns`` plus NaN for each column of ``group`` they lack: rows written (and
    journalled) by a version of the table from before that column was added. Only float
    columns can be added to a table; a missing column of another kind is an error."""
    n = len(next(iter(columns.values())))
    out = dict(columns)
    for name, ds in group.items():
        if name not in out:
            if ds.dtype.kind != "f":
                raise ValueError(f"rows without the table's column {name}")
            out[name] = np.full((n, *ds.shape[1:]), np.nan)
    return out


def append_table(group: h5py.Group, columns: dict[str, Any]) -> None:
    """Append rows to a table stored as one dataset per column (equal lengths)."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"table columns differ in length: {lengths}")
    if lengths == {0}:
        return
    had = max((len(group[name]) for name in columns if name in group), default=0)
    for name, values in columns.items():
        if name not in group and had:
            # A column added in a later version of the table: the rows before it get NaN.
            values = np.asarray(values)
            if values.dtype.kind != "f":
                raise ValueError(f"a column added to a filled table must be float: {name}")
            append(group, name, np.full((had, *values.shape[1:]), np.nan))
        append(group, name, values)


def read_table(
    group: h5py.Group | None,
    rows: np.ndarray | None = None,
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Columns of a table (strings decoded): all or those named, all rows or those a mask
    selects."""
    if group is None:
        return {}
    out: dict[str, Any] = {}
    for name, ds in group.items():
        if columns is not None and name not in columns:
            continue
        values = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
        out[name] = values if rows is None else values[rows]
    return out


def write_state(group: h5py.Group, state: dict[str, Any]) -> None:
    """Replace ``group``'s contents with ``state`` (arrays -> datasets, the rest -> attrs)."""
    for key in list(group):
        del group[key]
    for key in list(group.attrs):
        del group.attrs[key]
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
        else:
            group.attrs[key] = value


def read_state(group: h5py.Group) -> dict[str, Any]:
    """Inverse of :func:`write_state` (groups inside, other threads' states, left out)."""
    state: dict[str, Any] = {
        key: item[()] for key, item in group.items() if isinstance(item, h5py.Dataset)
    }
    for key, value in group.attrs.items():
        state[key] = value.item() if isinstance(value, np.generic) else value
    return state


def rows(table: dict[str, Any], *columns: str) -> Iterator[tuple[Any, ...]]:
    """The rows of a table read by :meth:`SessionFile.table`, as tuples of ``columns``
    (none if the table does not exist yet)."""
    return zip(*(table.get(name, []) for name in columns), strict=True)


def thread_path(thread: int, name: str) -> str:
    """Where thread ``thread``'s ``name`` (generations, references) lives in a session file:
    thread 0 at the root, as in a one-thread session; thread k under ``threads/k``."""
    return name if thread == 0 else f"threads/{thread}/{name}"
