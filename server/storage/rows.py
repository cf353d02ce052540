"""The rows of the tables of what the rig reported, as the HDF5 columns they are stored in
(one column per field; server/storage/session_file.py lays out the file)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from protocol.messages import Presentation, Response


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
