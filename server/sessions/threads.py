"""The evolution threads of a session: each its own generator, optimizer and score.

A session runs 1..N threads in lockstep: generation g of every thread is shown in the same
blocks, interleaved (:func:`~server.sessions.rounds.open_round`), and completes when the
whole round does. Thread 0 is stored where a one-thread session stores its only thread;
the others under ``threads/<k>`` (:mod:`server.storage.session_file`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.engine.loop import Engine
from server.engine.objectives import Objective
from server.engine.statistics import History
from server.sessions.config import SessionConfig


@dataclass
class SessionThread:
    """One thread: its settings (the session's, with the thread's own resolved into them),
    engine and history."""

    name: str
    config: SessionConfig
    engine: Engine
    history: History = field(default_factory=History)
    #: Where its search started, in words (None: the optimizer's own start).
    started_from: str | None = None

    @property
    def objective(self) -> Objective:
        return self.config.scoring()

    def summary(self, index: int) -> dict[str, Any]:
        """What the operator sees of this thread (its curve is in :meth:`History.as_json`)."""
        engine = self.engine
        return thread_summary(
            index,
            self.name,
            {"generator": engine.generator.name, "optimizer": engine.optimizer.name,
             "population": engine.optimizer.population},
            self.objective.describe(),
            self.started_from,
            self.history,
        )  # fmt: skip


def thread_summary(
    index: int,
    name: str,
    parts: dict[str, Any],
    objective: str,
    start: str | None,
    history: History,
) -> dict[str, Any]:
    """One thread's summary, live or stored: its ``parts`` (generator, optimizer,
    population), what it optimises, where it started and its closing numbers so far."""
    closing = history.summary()
    return {
        "index": index,
        "name": name,
        **{key: parts.get(key) for key in ("generator", "optimizer", "population")},
        "objective": objective,
        "start": start,
        **{key: closing[key] for key in ("best_score", "first_generation_mean",
                                         "last_generation_mean", "last_reference_mean")},
    }  # fmt: skip
