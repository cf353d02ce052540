"""What a session file exports, as plain columns: every distinct image numbered once, one
trial per presentation with its response, every response, the event log and the settings;
and the rule that puts the rig's onsets on the session's clock.

Only numpy and :class:`~server.storage.session_file.SessionFile`'s readers: the NWB writer
(:mod:`server.storage.nwb_writer`) turns these columns into NWB types, so the rules here
are tested without pynwb. docs/nwb.md says what goes where.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ConfigError
from protocol.messages import PresentationParams
from server import __version__
from server.storage.records import Event, evolved_id, thread_of
from server.storage.rows import FRAME_COLUMNS
from server.storage.session_file import SessionFile
from server.storage.tables import thread_path


@dataclass(frozen=True)
class Column:
    """One column of an exported table: a value per row (2-D: several per row), or, with
    ``ends``, a list of values per row (row i: ``data[ends[i-1]:ends[i]]``)."""

    data: np.ndarray
    description: str
    ends: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.data if self.ends is None else self.ends)

    def reorder(self, order: np.ndarray) -> Column:
        """The rows in ``order`` (for columns with one value per row)."""
        return Column(self.data[order], self.description)


#: An exported table: its columns by name, all of the same length.
Table = dict[str, Column]


@dataclass(frozen=True)
class Picture:
    """One distinct image: its name in the export, what it is, and how to read it. Read
    only when it is written, so that a long session's images are never all in memory."""

    name: str
    description: str
    shape: tuple[int, ...]
    read: Callable[[], np.ndarray]


@dataclass(frozen=True)
class SubjectInfo:
    """The animal as the exporter names it, over the session's settings (``subject``,
    ``species``, ``subject_age``): NWB's id, species (Latin binomial), sex (M, F, O or U)
    and age (ISO 8601 duration, e.g. P4Y). Without an age nwbinspector reports it as
    critical (DANDI requires one)."""

    subject_id: str | None = None
    species: str | None = None
    sex: str | None = None
    age: str | None = None


@dataclass(frozen=True)
class Metadata:
    """The file-level facts: who, what, when, where."""

    identifier: str
    description: str
    experiment_description: str
    start: dt.datetime
    experimenter: list[str]
    #: None when neither the settings nor the caller name the subject.
    subject: SubjectInfo | None
    #: The presenter's name (config ``rig``), or None: any presenter.
    rig: str | None
    #: The operator's notes, one line each, oldest first ("" if none).
    notes: str


@dataclass(frozen=True)
class Contents:
    """Everything an export writes."""

    metadata: Metadata
    pictures: list[Picture]
    #: One row per presentation, in time order; None: the rig reported none.
    trials: Table | None
    #: Records with no NWB type of their own (name -> (description, table)), each left
    #: out when empty.
    records: dict[str, tuple[str, Table]] = field(default_factory=dict)


# -- the clock -----------------------------------------------------------------------------
def clock_shift(
    onset: np.ndarray, received_at: np.ndarray, source: np.ndarray, start: float
) -> np.ndarray:
    """Seconds to add to each rig-clock ``onset`` to have it on the session's clock (seconds
    since ``start``, the session's creation by the server's clock).

    A rig's clock has an origin of its own, so each presentation is placed no later than
    the moment the server stored it (``received_at``): one shift per run of one clock, the
    smallest that keeps every presentation of the run from being later than its arrival.
    Within a run, differences between onsets are the rig's own. A run is a stretch of rows,
    in the order stored, from one ``source`` (transport and client: one presenter
    connection) whose onsets never decrease: another presenter, a reconnection or a
    restarted clock begins a new one."""
    if not len(onset):
        return np.array([], dtype=np.float64)
    source = np.asarray(source, dtype=object)
    first = np.concatenate([[True], (np.diff(onset) < 0) | (source[1:] != source[:-1])])
    run = np.cumsum(first) - 1
    shift = np.minimum.reduceat(received_at - start - onset, np.flatnonzero(first))
    return np.asarray(shift[run], dtype=np.float64)


# -- the images ----------------------------------------------------------------------------
_EMPTY = np.array([])


def _ranks(keys: np.ndarray) -> np.ndarray:
    """Each row's number among the rows with the same key so far (0, 1, ... per key)."""
    seen: dict[Any, int] = {}
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys.tolist()):
        out[i] = seen.get(key, 0)
        seen[key] = int(out[i]) + 1
    return out


class ImageCatalog:
    """Every distinct image of a session, numbered in the order of the export: the evolved
    images as stored (thread by thread, generation by generation), then the reference images
    by number; and the image and score each stimulus id the rig was sent stands for (ids as
    the session's rounds make them: ``g<generation>-e<position>``, with several threads
    ``g<generation>-t<thread>-e<position>``, and ``g<generation>-r<j>``)."""

    def __init__(self, store: SessionFile) -> None:
        self.threads = store.threads
        tables = [
            store.table(thread_path(t, "generations"), columns=("index", "scores"))
            for t in range(self.threads)
        ]
        per_thread = [np.asarray(t.get("index", _EMPTY), dtype=np.int64) for t in tables]
        self.thread = np.concatenate(
            [np.full(len(g), t, dtype=np.int32) for t, g in enumerate(per_thread)]
        )
        self.generation = np.concatenate(per_thread)
        self.scores = np.concatenate(
            [np.asarray(t.get("scores", _EMPTY), dtype=np.float64) for t in tables]
        )
        self.position = np.concatenate([_ranks(g) for g in per_thread]).astype(np.int64)
        self.stimulus_ids = [
            evolved_id(int(g), int(p), int(t), self.threads)
            for g, p, t in zip(self.generation, self.position, self.thread, strict=True)
        ]
        self.references = store.references()
        shown = store.table("references", columns=("generation", "index", "score"))
        self.shown_generation = np.asarray(shown.get("generation", _EMPTY), dtype=np.int64)
        self.shown_reference = np.asarray(shown.get("index", _EMPTY), dtype=np.int64)
        self.shown_score = np.asarray(shown.get("score", _EMPTY), dtype=np.float64)
        j = _ranks(self.shown_generation)
        self.shown_ids = [f"g{g}-r{k}" for g, k in zip(self.shown_generation, j, strict=True)]
        ids = [*self.stimulus_ids, *self.shown_ids]
        numbers = [*range(len(self.generation)), *(len(self.generation) + self.shown_reference)]
        #: Stimulus id -> the image's number in the export, and its score (a reference's:
        #: on thread 0's objective).
        self.number = dict(zip(ids, map(int, numbers), strict=True))
        self.score = dict(zip(ids, [*self.scores, *self.shown_score], strict=True))

    def pictures(self, store: SessionFile) -> list[Picture]:
        """The images in export order, each read from ``store`` when it is written."""
        out = []
        if len(self.generation):  # every thread's images are of one size (manager.py)
            shape = store.read_image(int(self.generation[0]), 0, int(self.thread[0])).shape
            thread = "thread {}'s " if self.threads > 1 else ""
            out += [
                Picture(sid, f"{thread.format(t)}evolved image {p} of generation {g}", shape,
                        partial(store.read_image, int(g), int(p), int(t)))
                for sid, g, p, t in zip(self.stimulus_ids, self.generation, self.position,
                                        self.thread, strict=True)
            ]  # fmt: skip
        refs = self.references
        if refs is not None:
            out += [
                Picture(f"reference-{k}", f"natural reference image {k}", refs.shape[1:],
                        partial(refs.__getitem__, k))
                for k in range(len(refs))
            ]  # fmt: skip
        return out


# -- the tables ------------------------------------------------------------------------------
def _strings(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=object)


def _some(values: np.ndarray) -> bool:
    """Whether a float column holds anything (columns the rig never filled are left out)."""
    return bool(np.isfinite(values).any())


def all_responses(store: SessionFile) -> dict[str, np.ndarray] | None:
    """The responses table and the late responses (``late`` True) as one, or None."""
    parts = [(store.table(name), name == "late_responses")
             for name in ("responses", "late_responses")]  # fmt: skip
    parts = [(t, late) for t, late in parts if len(t.get("presentation_id", ()))]
    if not parts:
        return None
    out = {name: np.concatenate([t[name] for t, _ in parts]) for name in parts[0][0]}
    out["late"] = np.concatenate([np.full(len(t["presentation_id"]), late) for t, late in parts])
    return out


COUNTS = ("spike counts in the evoked window as the recorder sent them, one column per "
          "recorded channel (column k: channel k)")  # fmt: skip
BASELINE = "spike counts in the baseline window, one column per channel; NaN: none sent"
#: What the optional presentation columns (rows.FRAME_COLUMNS) hold.
FRAME_DESCRIPTIONS = {
    "frames": "stimulus frames the presenter showed; NaN: not reported",
    "dropped_frames": "frames the display missed during the trial; NaN: not reported",
}


def trial_table(
    store: SessionFile,
    catalog: ImageCatalog,
    answers: dict[str, np.ndarray] | None,
    on_s: float,
) -> Table | None:
    """One row per presentation the rig reported, in time order, with the image it showed,
    that image's score, and the counts of its response among ``answers`` (on time or late);
    None if the rig reported no presentation (a folder-mode rig, an in-silico run)."""
    shown = store.table("presentations")
    n = len(shown.get("presentation_id", ()))
    if not n:
        return None
    onset = np.asarray(shown["onset"], dtype=np.float64)
    shift = clock_shift(onset, np.asarray(shown["received_at"]), shown["source"], store.created)
    start = onset + shift
    offset = np.asarray(shown.get("offset", np.full(n, np.nan)), dtype=np.float64)
    ids = [str(s) for s in shown["stimulus_id"]]
    table: Table = {
        "start_time": Column(start, "onset on the session's clock (s; docs/nwb.md, Times)"),
        "stop_time": Column(
            np.where(np.isfinite(offset), offset + shift, start + on_s),
            "offset on the session's clock where the presenter reported one, else onset "
            "plus the session's on_ms",
        ),
        "generation": Column(np.asarray(shown["generation"], np.int32), "generation shown"),
        "block": Column(np.asarray(shown["block"], np.int32),
                        "block of the generation (0: first showing, then re-presentations)"),
        "thread": Column(np.array([thread_of(s) for s in ids], np.int32),
                         "evolution thread of the image (0: the first, and references)"),
        "presentation_id": Column(_strings(shown["presentation_id"]), "the rig's trial id"),
        "stimulus_id": Column(_strings(ids), "the image's id in the session"),
        "is_reference": Column(np.array([_is_reference(s) for s in ids]),
                               "a natural reference image (else an evolved one)"),
        "outcome": Column(_strings(shown["outcome"]), "ok, or aborted (e.g. broken fixation)"),
        "image_index": Column(
            np.array([catalog.number.get(s, -1) for s in ids], dtype=np.int64),
            "index of the image in stimulus_templates/images; -1: its generation never "
            "completed, so the file holds no image",
        ),
        "score": Column(np.array([catalog.score.get(s, np.nan) for s in ids]),
                        "the image's score (mean over its presentations); NaN: none"),
        "rig_onset": Column(onset, "onset as the rig reported it (s, the rig's own clock)"),
    }  # fmt: skip
    if _some(offset):
        table["rig_offset"] = Column(offset, "offset as the rig reported it (s, rig clock)")
    for name in FRAME_COLUMNS:
        if name in FRAME_DESCRIPTIONS and name in shown and _some(shown[name]):
            table[name] = Column(np.asarray(shown[name], np.float64), FRAME_DESCRIPTIONS[name])
    table.update(_answers(shown["presentation_id"], answers))
    order = np.argsort(start, kind="stable")
    return {name: c.reorder(order) for name, c in table.items()}


_REFERENCE_ID = re.compile(r"g\d+-r\d+")


def _is_reference(stimulus_id: str) -> bool:
    return bool(_REFERENCE_ID.fullmatch(stimulus_id))


def _answers(presentations: np.ndarray, answers: dict[str, np.ndarray] | None) -> Table:
    """The trial columns of the responses: each presentation's counts (NaN: no answer)."""
    if answers is None:
        return {}
    row_of = {str(p): i for i, p in enumerate(answers["presentation_id"])}
    rows = np.array([row_of.get(str(p), -1) for p in presentations], dtype=np.int64)

    def take(values: np.ndarray) -> np.ndarray:
        picked = values[np.maximum(rows, 0)].astype(np.float64)
        picked[rows < 0] = np.nan
        return picked

    out = {"counts": Column(take(answers["counts"]), COUNTS + "; NaN: no response")}
    if _some(answers["baseline_counts"]):
        out["baseline_counts"] = Column(take(answers["baseline_counts"]), BASELINE)
    late = answers["late"][np.maximum(rows, 0)] & (rows >= 0)
    out["late_response"] = Column(late, "the response came after its generation completed "
                                        "(stored, never scored)")  # fmt: skip
    return out


def evolved_table(store: SessionFile, catalog: ImageCatalog) -> Table:
    """One row per evolved image, row i being image i of the stimulus templates. Threads
    whose codes differ in length (other generators) make ``code`` a list per row."""
    codes = [
        np.asarray(
            store.table(thread_path(t, "generations"), columns=("codes",)).get(
                "codes", np.zeros((0, 0))
            ),
            np.float32,
        )
        for t in range(catalog.threads)
    ]
    what = "the latent code the generator made the image from"
    if len({c.shape[1] for c in codes if len(c)}) > 1:
        flat = np.concatenate([c.reshape(-1) for c in codes])
        lengths = np.concatenate([np.full(len(c), c.shape[1]) for c in codes])
        code = Column(flat, what + " (its thread's generator's length)", np.cumsum(lengths))
    else:
        code = Column(np.concatenate([c for c in codes if len(c)] or [codes[0]]), what)
    return {
        "generation": Column(catalog.generation, "generation"),
        "position": Column(catalog.position, "position in its generation (of its thread)"),
        "thread": Column(catalog.thread, "evolution thread (0: the first)"),
        "stimulus_id": Column(_strings(catalog.stimulus_ids), "the image's id in the session"),
        "score": Column(catalog.scores, "score the optimizer was told; NaN: no response"),
        "code": code,
    }


def reference_table(catalog: ImageCatalog) -> Table:
    """One row per reference image shown in a generation, with its score there."""
    evolved = len(catalog.generation)
    return {
        "generation": Column(catalog.shown_generation, "generation"),
        "stimulus_id": Column(_strings(catalog.shown_ids), "the image's id in the session"),
        "reference": Column(catalog.shown_reference, "the reference image's number"),
        "image_index": Column(evolved + catalog.shown_reference,
                              "index of the image in stimulus_templates/images"),
        "score": Column(catalog.shown_score, "score (never told to the optimizer)"),
    }  # fmt: skip


def response_table(answers: dict[str, np.ndarray] | None, start: float) -> Table:
    """Every response the recorder sent, as stored (``answers``: on time, then late;
    ``start``: the session's creation)."""
    if answers is None:
        return {}
    table = {
        "generation": Column(answers["generation"], "generation"),
        "block": Column(answers["block"], "block the response answered (-1: late)"),
        "presentation_id": Column(_strings(answers["presentation_id"]), "the rig's trial id"),
        "stimulus_id": Column(_strings(answers["stimulus_id"]), "the image's id"),
        "counts": Column(answers["counts"], COUNTS),
        "evoked_window_ms": Column(answers["evoked_window_ms"],
                                   "evoked window (ms after onset): start, end"),
        "received_time": Column(answers["received_at"] - start,
                                "when the server stored it (s, session clock)"),
        "source": Column(_strings(answers["source"]), "how it came (transport:client)"),
        "late": Column(answers["late"], "after its generation completed (never scored)"),
    }  # fmt: skip
    if _some(answers["baseline_counts"]):
        table["baseline_counts"] = Column(answers["baseline_counts"], BASELINE)
        table["baseline_window_ms"] = Column(
            answers["baseline_window_ms"], "baseline window (ms after onset); NaN: none"
        )
    return table


def _ragged(rows: list[list[str]], description: str) -> Column:
    return Column(_strings([v for row in rows for v in row]), description,
                  np.cumsum([len(row) for row in rows], dtype=np.int64))  # fmt: skip


def event_table(events: list[Event], start: float) -> Table:
    """The session's event log, oldest first (``start``: the session's creation), each
    event's details unpacked into lists of keys and values."""
    if not events:
        return {}
    details = [list(_flatten(e.detail)) for e in events]
    return {
        "time": Column(np.array([e.time for e in events]) - start, "when (s, session clock)"),
        "generation": Column(np.array([e.generation for e in events], np.int32),
                             "generation (-1: none)"),
        "kind": Column(_strings([e.kind for e in events]), "what happened"),
        "detail_key": _ragged([[k for k, _ in d] for d in details],
                              "the details' keys (dotted where nested)"),
        "detail_value": _ragged([[v for _, v in d] for d in details],
                                "the details' values (JSON), key by key"),
    }  # fmt: skip


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, JSON value) of every leaf of nested dicts (an empty one has none): NWB
    tables hold no dicts."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, json.dumps(value, default=str)


def settings_table(store: SessionFile) -> Table:
    """The session file's record (settings, generator, optimizer), the scalars of the
    optimizer's last saved state (its settings and random state, JSON there, unpacked),
    the file's status and the exporter's version."""
    state = store.optimizer_state() or {}
    scalars = {
        key: json.loads(value) if key in ("settings", "rng") else value
        for key, value in state.items() if not isinstance(value, np.ndarray)
    }  # fmt: skip
    record = {**store.config, "status": store.status, "optimizer_state": scalars,
              "exported_by": f"xdream-rig {__version__}"}  # fmt: skip
    keys, values = zip(*_flatten(record), strict=True)
    return {
        "setting": Column(_strings(keys), "dotted key in the session file's record"),
        "value": Column(_strings(values), "its value (JSON)"),
    }


# -- all of it -------------------------------------------------------------------------------
def _settings(record: dict[str, Any]) -> dict[str, Any]:
    """The session's settings: server sessions keep them under ``config``, ``xdream
    evolve`` files at the top of the record."""
    settings = record.get("config", record)
    return settings if isinstance(settings, dict) else {}


def _note(event: Event) -> str:
    """One operator's note as a line of NWB's ``notes``."""
    when = dt.datetime.fromtimestamp(event.time, dt.timezone.utc)
    text = event.detail.get("text", "")
    return f"generation {event.generation}, {when:%Y-%m-%d %H:%M:%S} UTC: {text}"


def metadata(store: SessionFile, events: list[Event], subject: SubjectInfo) -> Metadata:
    """File-level facts from the record, the operator's notes among ``events``, and what the
    caller adds of the ``subject`` (ConfigError: details of a subject with no id)."""
    record = store.config
    settings = _settings(record)
    session_id = str(record.get("session_id") or Path(store.path).stem)
    subject_id = subject.subject_id or settings.get("subject") or None
    if subject_id is None and any((subject.species, subject.sex, subject.age)):
        raise ConfigError("the session names no subject: give the subject's id too")
    return Metadata(
        identifier=session_id,
        description=settings.get("name") or f"xdream-rig session {session_id}",
        experiment_description=(
            f"XDream closed-loop image evolution: {record.get('generator')} generator, "
            f"{record.get('optimizer')} optimizer, {record.get('population')} images per "
            "generation"
        ),
        start=dt.datetime.fromtimestamp(store.created, dt.timezone.utc),
        experimenter=[settings["experimenter"]] if settings.get("experimenter") else [],
        subject=None if subject_id is None else SubjectInfo(
            subject_id, subject.species or settings.get("species") or None, subject.sex or "U",
            subject.age or settings.get("subject_age") or None),
        rig=settings.get("rig"),
        notes="\n".join(_note(e) for e in events if e.kind == "note"),
    )  # fmt: skip


def gather(store: SessionFile, subject: SubjectInfo) -> Contents:
    """Everything an export of ``store`` writes (the images still unread)."""
    catalog, events, answers = ImageCatalog(store), store.events(), all_responses(store)
    on_s = PresentationParams(**_settings(store.config).get("params", {})).on_ms / 1000
    records = {
        "evolved_images": ("one row per evolved image (row i: stimulus template i): its "
                           "generation, score and latent code", evolved_table(store, catalog)),
        "reference_showings": ("one row per reference image shown in a generation, with "
                               "its score there", reference_table(catalog)),
        "responses": ("every response the recorder sent, as stored (on time and late)",
                      response_table(answers, store.created)),
        "events": ("the session's event log", event_table(events, store.created)),
        "settings": ("the session's settings, generator and optimizer, one per row",
                     settings_table(store)),
    }  # fmt: skip
    return Contents(
        metadata(store, events, subject),
        catalog.pictures(store),
        trial_table(store, catalog, answers, on_s),
        {name: (text, table) for name, (text, table) in records.items()
         if table and next(iter(table.values())).rows},
    )  # fmt: skip
