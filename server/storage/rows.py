"""The rows of the tables of what the rig reported, as the HDF5 columns they are stored in
(one column per field; server/storage/session_file.py lays out the file)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from protocol.messages import Presentation, Response
from server.storage.tables import rows

#: Optional presentation fields stored as float columns (protocol 1.2). A file written before
#: them gets the columns on its next presentation, NaN for the rows before
#: (:func:`~server.storage.tables.append_table`).
FRAME_COLUMNS = ("offset", "frames", "dropped_frames")


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def presentations_from(table: dict[str, Any]) -> list[Presentation]:
    """The presentations of a table of :func:`presentation_rows` (as read back)."""
    n = len(table.get("presentation_id", []))
    nan = np.full(n, np.nan)
    offset, frames, dropped = (table.get(name, nan) for name in FRAME_COLUMNS)
    return [
        Presentation(
            presentation_id=p, stimulus_id=s, onset=float(o), outcome=x, offset=_or_none(t),
            frames=None if np.isnan(f) else int(f), dropped_frames=None if np.isnan(d) else int(d),
        )
        for p, s, o, x, t, f, d in zip(
            *(table.get(name, []) for name in ("presentation_id", "stimulus_id", "onset",
                                               "outcome")),
            offset, frames, dropped, strict=True,
        )
    ]  # fmt: skip


def responses_from(table: dict[str, Any]) -> list[Response]:
    """The responses of a table of :func:`response_rows` (as read back), baselines and
    windows included: a resumed generation scores them as it did before the restart."""
    out = []
    columns = ("presentation_id", "stimulus_id", "counts", "baseline_counts",
               "evoked_window_ms", "baseline_window_ms")  # fmt: skip
    for p, s, c, b, e, w in rows(table, *columns):
        # Counts are never NaN on the wire: NaN marks what the rig did not send.
        out.append(
            Response(
                presentation_id=p, stimulus_id=s, counts=[float(x) for x in c],
                evoked_window_ms=(float(e[0]), float(e[1])),
                baseline_counts=None if np.isnan(b).any() else [float(x) for x in b],
                baseline_window_ms=None if np.isnan(w).any() else (float(w[0]), float(w[1])),
            )
        )  # fmt: skip
    return out


def presentation_rows(
    generation: int, block: int, presentations: Sequence[Presentation], source: str
) -> dict[str, Any]:
    """A row per presentation: its ids, the rig's onset and outcome, when and whence."""
    n = len(presentations)
    return {
        "generation": np.full(n, generation, dtype=np.int32),
        "block": np.full(n, block, dtype=np.int32),
        "presentation_id": [p.presentation_id for p in presentations],
        "stimulus_id": [p.stimulus_id for p in presentations],
        "onset": np.array([p.onset for p in presentations]),
        "outcome": [p.outcome for p in presentations],
        # What a frame-counting presenter measured; NaN where it did not say.
        **{
            name: np.array([_or_nan(getattr(p, name)) for p in presentations], np.float64)
            for name in FRAME_COLUMNS
        },
        "received_at": np.full(n, time.time()),
        "source": [source] * n,
    }


def response_rows(
    generation: int, block: int, responses: Sequence[Response], source: str
) -> dict[str, Any]:
    """A row per response: counts and baseline counts per channel (NaN where the rig sent
    no baseline), the rig's windows, when and whence."""
    n = len(responses)
    width = len(responses[0].counts)

    def baseline(r: Response) -> list[float]:
        return list(r.baseline_counts) if r.baseline_counts is not None else [np.nan] * width

    return {
        "generation": np.full(n, generation, dtype=np.int32),
        "block": np.full(n, block, dtype=np.int32),
        "presentation_id": [r.presentation_id for r in responses],
        "stimulus_id": [r.stimulus_id for r in responses],
        "counts": np.array([r.counts for r in responses], dtype=np.float64),
        "baseline_counts": np.array([baseline(r) for r in responses], dtype=np.float64),
        "evoked_window_ms": np.array([r.evoked_window_ms for r in responses], dtype=np.float64),
        "baseline_window_ms": np.array(
            [r.baseline_window_ms or (np.nan, np.nan) for r in responses], dtype=np.float64
        ),
        "received_at": np.full(n, time.time()),
        "source": [source] * n,
    }
