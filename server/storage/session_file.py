"""One HDF5 file per session: configuration, every generation, every response, events.

Layout (all under the file root)::

    attrs: format, config (JSON), status, created, updated, closed (by its writer)
    generations/index     (images,)            int32   generation of each image
    generations/codes     (images, code_dim)   float32
    generations/images    (images, H, W, 3)    uint8, gzip, one chunk per image
    generations/scores    (images,)            float64, NaN = no response
    generations/<extra>   (images, ...)        e.g. noiseless activations, responses counted
    timings               (generations, k)     float64, column names in attrs["columns"]:
                          ask, generate, score (in silico: the neuron; on a rig: first
                          block sent to last response), tell, store; seconds
    optimizer/            state after the last complete generation (arrays -> datasets);
                          written last, so its ``generation`` counts the complete ones
    references/images     (refs, H, W, 3)      the session's natural reference images
    references/generation, /index, /score      one row per reference shown and scored
    presentations/...     one row per reported presentation (rig onset, outcome, block)
    responses/...         one row per accepted response (counts per channel, rig windows)
    late_responses/...    responses that arrived after their generation completed
    events/...            time, generation, kind, detail (JSON): the session's log
    threads/<k>/generations, threads/<k>/references/{generation,index,score}
                          a session of several threads: thread k >= 1's images, scored on
                          its objective (thread 0's are the root's, as in a one-thread file);
                          their optimizer states are optimizer/threads/<k>, swapped in with
                          thread 0's, so one rename completes a generation of every thread

Tables grow along their first axis and the file is flushed after every write the server
acknowledges. HDF5 itself is not crash-safe (a kill inside a flush can leave a dataset
unreadable), so a server's session file also keeps a journal (``<id>.journal``,
:mod:`server.storage.journal`): everything is written there first, fsynced before an
acknowledgement, and a crashed file is repaired from it or rebuilt
(:mod:`server.storage.recovery`, :mod:`server.storage.rebuild`). h5py serialises all calls
behind one lock: callers in an event loop must write from a worker thread.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from protocol.errors import ConfigError, NotFound
from protocol.messages import Presentation, Response
from server.engine.loop import GenerationResult
from server.engine.statistics import Scored, channel_means
from server.storage.journal import Journal
from server.storage.records import (
    Event,
    ResumePoint,
    SessionFileError,
    StoredRound,
    ThreadGeneration,
    evolved_marker,
)
from server.storage.recovery import (
    ROW_TABLES,
    check_generations,
    cut_to_acknowledged,
    journal_records,
    recover_rows,
)
from server.storage.rows import (
    presentation_rows,
    presentations_from,
    response_rows,
    responses_from,
)
from server.storage.tables import (
    append,
    append_table,
    read_state,
    read_table,
    rows,
    thread_path,
    write_state,
)

FORMAT = "xdream-rig session 1"


def by_generation(generation: np.ndarray, done: int) -> list[np.ndarray]:
    """The row numbers of each generation 0 .. ``done`` - 1 in a ``generation`` column (rows
    of later generations left out), in one sort instead of a scan per generation."""
    generation = np.asarray(generation, dtype=np.int64)
    order = np.argsort(generation, kind="stable")
    bounds = np.searchsorted(generation[order], np.arange(done + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(done)]


_TIMING_COLUMNS = ("ask_s", "generate_s", "score_s", "tell_s", "store_s")


class SessionFile:
    """Writer for one session's HDF5 file (the only process with it open while it runs)."""

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        overwrite: bool = False,
        status: str = "running",  # a session state (server/sessions/states.py)
        journal: Path | None = None,
        created: float | None = None,
    ) -> None:
        """A new session file; with a ``journal`` path, every row is first written and
        fsynced there (:mod:`server.storage.journal`)."""
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise ConfigError(f"{self.path} already exists; choose a new --out directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        now = time.time()
        self._file.attrs.update(
            format=FORMAT,
            config=json.dumps(config),
            status=status,
            created=now if created is None else created,  # given: a file rebuilt
            updated=now,
            closed=False,  # True once its writer closes it: a False one may need repair
        )
        self._file.create_group("generations")
        self._file.flush()
        self._journal = Journal(journal) if journal is not None else None
        self._log({"attrs": dict(self._file.attrs)})

    @classmethod
    def reopen(cls, path: Path, mode: str = "r+", journal: Path | None = None) -> SessionFile:
        """Open an existing session file: ``r+`` to continue it (e.g. after a server
        restart; ``journal``: the journal to go on with), ``r`` to read a closed one."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self._journal = None
        try:
            self._file = h5py.File(self.path, mode)
        except OSError as exc:
            raise SessionFileError(
                f"{self.path} cannot be opened as a session file: {exc}"
            ) from None
        if self._file.attrs.get("format") != FORMAT:
            self._file.close()
            raise SessionFileError(f"{self.path} is not an xdream-rig session file")
        if mode != "r":
            self._file.attrs["closed"] = False
            if journal is not None:
                self._journal = Journal(journal)
        return self

    # -- what a resumed session needs ---------------------------------------------------
    @property
    def is_open(self) -> bool:
        return bool(self._file.id.valid)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self._file.attrs["config"])

    @property
    def status(self) -> str:
        return str(self._file.attrs["status"])

    @property
    def created(self) -> float:
        """When the session was created (seconds since the epoch)."""
        return float(self._file.attrs["created"])

    def optimizer_state(self, thread: int = 0) -> dict[str, Any] | None:
        """``thread``'s optimizer state after the last complete generation (None before
        the first)."""
        group = self._file.get("optimizer") or self._file.get("optimizer.new")
        if group is not None and thread:
            group = group.get(f"threads/{thread}")
        return read_state(group) if group is not None and len(group.attrs) else None

    @functools.cached_property
    def threads(self) -> int:
        """How many evolution threads the session runs (its record's ``threads``)."""
        return max(len(self.config.get("threads", [])), 1)

    def generations_done(self) -> int:
        """Complete generations: those the saved optimizer state has been told about."""
        state = self.optimizer_state()
        return 0 if state is None else int(state["generation"])

    def repair(self) -> list[str]:
        """Bring a file a crash left mid-write back to everything acknowledged; what was
        done (see :mod:`server.storage.recovery`). SessionFileError if beyond repair."""
        records = journal_records(self._journal.path if self._journal else None)
        # A journal with no records (lost, and begun anew on this reopen) knows nothing.
        notes = recover_rows(self._file, records) if records else []
        notes += cut_to_acknowledged(self._file)
        check_generations(self._file, records)
        if notes:
            self._touch_and_flush()
        return notes

    def drop_partial_generation(self, done: int) -> None:
        """Remove rows a crash left of generation ``done`` (written before its optimizer
        state was), so that the resumed session stores that generation exactly once."""
        for thread in range(self.threads):
            g = self._file.get(thread_path(thread, "generations"))
            if g is not None and "index" in g:
                keep = int(np.sum(g["index"][()] < done))
                for ds in g.values():
                    ds.resize(keep, axis=0)
            refs = self._file.get(thread_path(thread, "references"))
            if refs is not None and "generation" in refs:
                keep = int(np.sum(refs["generation"][()] < done))
                for name in ("generation", "index", "score"):
                    refs[name].resize(keep, axis=0)
        if "timings" in self._file:
            self._file["timings"].resize(min(done, self._file["timings"].shape[0]), axis=0)
        self._touch_and_flush()

    def table(
        self, name: str, generation: int | None = None, columns: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """A table's columns (all, or those named: ``generations`` holds every image), all
        rows or only those of ``generation``."""
        group = self._file.get(name)
        if group is None or generation is None:
            return read_table(group, columns=columns)
        return read_table(group, group["generation"][()] == generation, columns)

    def references(self) -> np.ndarray | None:
        ds = self._file.get("references/images")
        return None if ds is None else ds[()]

    # -- writing ------------------------------------------------------------------------
    def _touch_and_flush(self) -> None:
        self._file.attrs["updated"] = time.time()
        self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def _log(self, record: dict[str, Any], sync: bool = True) -> None:
        """Journal ``record`` (if this file keeps a journal) before it goes to HDF5."""
        if self._journal is not None:
            self._journal.append(record, sync=sync)

    def set_status(self, status: str) -> None:
        self._log({"status": status})
        self._file.attrs["status"] = status
        self._touch_and_flush()

    def write_references(self, images: np.ndarray) -> None:
        self._log({"references": images})
        self._file.require_group("references").create_dataset(
            "images",
            data=images,
            chunks=(1, *images.shape[1:]),
            compression="gzip",
            compression_opts=1,
        )
        self._touch_and_flush()

    def append_rows(self, table: str, columns: dict[str, Any]) -> None:
        """Append rows to ``table`` (presentations, responses, ...) and flush: journalled
        first (fsynced for what the rig is acknowledged), so a crash in the HDF5 write
        loses nothing that was acknowledged."""
        if table in ROW_TABLES:
            self._log({"table": table, "columns": columns}, sync=table != "events")
        append_table(self._file.require_group(table), columns)
        self._touch_and_flush()

    def log_event(self, kind: str, generation: int = -1, **detail: Any) -> None:
        self.append_rows(
            "events",
            {
                "time": [time.time()],
                "generation": np.array([generation], dtype=np.int32),
                "kind": [kind],
                "detail": [json.dumps(detail, default=str)],
            },
        )

    def write_generation(
        self,
        result: GenerationResult,
        optimizer_state: dict[str, Any],
        reference_scores: Sequence[tuple[int, float]] = (),
        threads: Sequence[ThreadGeneration] = (),
    ) -> None:
        """Store a complete generation, the optimizer state after it, and reference scores
        (journalled first without the images, which the generator makes again from the
        codes if the file must be rebuilt); ``threads``: the same generation of the
        session's threads 1, 2, ... (the timings row is every thread's, summed)."""
        t0 = time.perf_counter()
        every = [ThreadGeneration(result, optimizer_state, reference_scores), *threads]
        record = _journalled(every[0])
        if threads:
            record["threads"] = [_journalled(t) for t in threads]
        self._log({"generation": record})
        for thread, generation in enumerate(every):
            self._append_generation(thread, generation)
        timings = {
            c: float(np.sum([t.result.timings.get(c, np.nan) for t in every]))
            for c in ("ask_s", "generate_s", "tell_s")
        }
        timings.update(score_s=result.timings.get("score_s", np.nan),
                       store_s=time.perf_counter() - t0)  # fmt: skip
        first = "timings" not in self._file
        append(self._file, "timings", np.array([[timings[c] for c in _TIMING_COLUMNS]]))
        if first:
            self._file["timings"].attrs["columns"] = list(_TIMING_COLUMNS)
        self._write_optimizer_state([t.optimizer_state for t in every])
        self._touch_and_flush()

    def _append_generation(self, thread: int, generation: ThreadGeneration) -> None:
        """Append one thread's images, codes, scores and reference scores."""
        result, reference_scores = generation.result, generation.reference_scores
        g = self._file.require_group(thread_path(thread, "generations"))
        n = len(result.scores)
        append(g, "index", np.full(n, result.index, dtype=np.int32))
        append(g, "codes", result.codes.astype(np.float32))
        append(g, "images", result.images, compression="gzip", compression_opts=1)
        append(g, "scores", result.scores.astype(np.float64))
        for name, values in result.extra.items():
            append(g, name, np.asarray(values))
        if reference_scores:
            append_table(
                self._file.require_group(thread_path(thread, "references")),
                {
                    "generation": np.full(len(reference_scores), result.index, dtype=np.int32),
                    "index": np.array([i for i, _ in reference_scores], dtype=np.int32),
                    "score": np.array([s for _, s in reference_scores], dtype=np.float64),
                },
            )

    def _write_optimizer_state(self, states: Sequence[dict[str, Any]]) -> None:
        """Written last and swapped in whole (every thread's in one group): the saved state
        marks a generation complete."""
        if "optimizer.new" in self._file:
            del self._file["optimizer.new"]
        group = self._file.create_group("optimizer.new")
        write_state(group, states[0])
        for thread, state in enumerate(states[1:], start=1):
            write_state(group.create_group(f"threads/{thread}"), state)
        if "optimizer" in self._file:
            del self._file["optimizer"]
        self._file.move("optimizer.new", "optimizer")

    # -- what the rig reported ---------------------------------------------------------------
    def append_presentations(
        self, generation: int, block: int, presentations: Sequence[Presentation], source: str
    ) -> None:
        """One ``presentations`` row per presentation of ``block`` (with the rig's onset)."""
        self.append_rows(
            "presentations", presentation_rows(generation, block, presentations, source)
        )

    def append_responses(
        self,
        generation: int,
        block: int,
        responses: Sequence[Response],
        source: str,
        late: bool = False,
    ) -> None:
        """One row per response in ``responses`` (or, ``late``, in ``late_responses``)."""
        table = "late_responses" if late else "responses"
        self.append_rows(table, response_rows(generation, block, responses, source))

    def stored_round(self, generation: int) -> StoredRound:
        """The presentations, responses and blocks stored for ``generation``."""
        presented = presentations_from(self.table("presentations", generation))
        responses = responses_from(self.table("responses", generation))
        kinds = self.table("events", generation, columns=("kind",)).get("kind", np.array([]))
        return StoredRound(presented, responses, int(np.sum(kinds == "block_sent")))

    def resume_point(self) -> ResumePoint:
        """Where the session continues after a restart (see :class:`ResumePoint`)."""
        done = self.generations_done()
        responses = self.table("responses", columns=("presentation_id", "generation", "counts"))
        late = self.table("late_responses", columns=("presentation_id",))
        ids = responses.get("presentation_id", np.array([], dtype=object))
        gens = responses.get("generation", np.array([], dtype=np.int32))
        seen = set(ids[gens < done]) | set(late.get("presentation_id", []))
        counts = responses.get("counts")
        return ResumePoint(done, seen, None if counts is None else int(counts.shape[1]))

    def generation_scores(self, done: int, thread: int = 0) -> list[Scored]:
        """The first ``done`` generations of ``thread``: evolved and reference scores (on
        its objective), which reference image each is, and the mean count per channel of
        the responses that were scored (those of aborted presentations are not)."""
        empty = np.array([])
        gens = self.table(thread_path(thread, "generations"), columns=("index", "scores"))
        index, scores = gens.get("index", empty), gens.get("scores", empty)
        refs = self.table(
            thread_path(thread, "references"), columns=("generation", "index", "score")
        )
        ref_gen, ref_score = refs.get("generation", empty), refs.get("score", empty)
        ref_image = refs.get("index", empty)
        answers = self.table("responses", columns=("generation", "presentation_id", "stimulus_id",
                                                   "counts"))  # fmt: skip
        shown = self.table("presentations", columns=("presentation_id", "outcome"))
        aborted = {p for p, o in rows(shown, "presentation_id", "outcome") if o == "aborted"}
        scored = np.array([p not in aborted for p in answers.get("presentation_id", [])], bool)
        stimulus = np.asarray(answers.get("stimulus_id", []), dtype=str)
        evolved = np.char.find(stimulus, evolved_marker(thread, self.threads)) >= 0
        reference = np.char.find(stimulus, "-r") >= 0
        # Rows of each generation, found in one pass (a long session has many of both).
        images, shown_refs = by_generation(index, done), by_generation(ref_gen, done)
        answered = by_generation(answers.get("generation", empty), done)

        def channels(rows: np.ndarray, kind: np.ndarray) -> np.ndarray | None:
            mine = rows[scored[rows] & kind[rows]]
            return (
                channel_means(list(stimulus[mine]), answers["counts"][mine]) if mine.size else None
            )

        return [
            Scored(scores[images[g]], ref_score[shown_refs[g]],
                   ref_image[shown_refs[g]].astype(int),
                   channels(answered[g], evolved), channels(answered[g], reference))
            for g in range(done)
        ]  # fmt: skip

    def timings(self) -> dict[str, np.ndarray]:
        """Seconds per complete generation of each timed step (ask_s, generate_s, ...)."""
        if "timings" not in self._file:
            return {}
        ds = self._file["timings"]
        rows = ds[()]
        return {str(c): rows[:, i] for i, c in enumerate(ds.attrs["columns"])}

    def events(self) -> list[Event]:
        """The session's event log, oldest first."""
        table = self.table("events", columns=("time", "generation", "kind", "detail"))
        return [
            Event(float(t), int(g), str(k), json.loads(d))
            for t, g, k, d in rows(table, "time", "generation", "kind", "detail")
        ]

    def _generations(self, thread: int) -> h5py.Group | None:
        """Thread ``thread``'s generations, None before its first (NotFound: the session
        has no such thread)."""
        if not 0 <= thread < self.threads:
            raise NotFound(f"the session has no thread {thread}")
        return self._file.get(thread_path(thread, "generations"))

    def read_image(self, generation: int, position: int, thread: int = 0) -> np.ndarray:
        """Image ``position`` of ``generation`` of ``thread`` (NotFound if not stored)."""
        g = self._generations(thread)
        if g is None or "index" not in g:
            raise NotFound(f"generation {generation} is not stored")
        found = np.flatnonzero(g["index"][()] == generation)
        if not 0 <= position < len(found):
            raise NotFound(f"generation {generation} has no image {position}")
        return g["images"][found[position]]

    def best(self, thread: int = 0) -> tuple[int, float, np.ndarray] | None:
        """Generation, score and image of ``thread``'s best-scored image so far."""
        g = self._generations(thread)
        if g is None or "scores" not in g:
            return None
        scores = g["scores"][()]
        if np.isnan(scores).all():
            return None
        row = int(np.nanargmax(scores))
        return int(g["index"][row]), float(scores[row]), g["images"][row]

    def best_per_generation(self, thread: int = 0) -> list[tuple[int, float, np.ndarray]]:
        """Generation, score and image of each generation's best image of ``thread``
        (unscored ones left out), in generation order."""
        g = self._generations(thread)
        if g is None or "scores" not in g:
            return []
        index, scores = g["index"][()], g["scores"][()]
        out = []
        for generation in np.unique(index):
            mine = np.flatnonzero((index == generation) & ~np.isnan(scores))
            if mine.size:
                row = int(mine[np.argmax(scores[mine])])
                out.append((int(generation), float(scores[row]), g["images"][row]))
        return out

    def close(self, status: str | None = None) -> None:
        """Close the file, first marking it ``status`` (e.g. finished, aborted) if given."""
        try:
            if self._file.id.valid:
                if self._file.mode != "r":
                    if status is not None:
                        self._file.attrs["status"] = status
                    self._file.attrs["updated"] = time.time()
                    self._file.attrs["closed"] = True
                self._file.close()
        finally:
            if self._journal is not None:
                self._journal.close()

    def abandon(self) -> None:
        """Close without a word to the file: one found damaged must not read as closed."""
        try:
            if self._file.id.valid:
                self._file.close()
        finally:
            if self._journal is not None:
                self._journal.close()


def _journalled(generation: ThreadGeneration) -> dict[str, Any]:
    """A thread's generation as the journal keeps it: everything but the images."""
    result = generation.result
    return {
        "index": result.index, "codes": result.codes.astype(np.float32),
        "scores": result.scores, "extra": result.extra, "timings": result.timings,
        "reference_scores": list(generation.reference_scores),
        "optimizer": generation.optimizer_state,
    }  # fmt: skip
