"""What the HTTP API answers, as pydantic models, so ``/openapi.json`` describes real bodies
(and a client generator gets real types) instead of ``{}`` for every route.

The routes still build plain dicts (``Session.summary()`` and friends are shared with the
live stream); these models check and document them. They are deliberately permissive:
values that can be missing are optional, and unknown keys pass through (``extra="allow"``),
so a valid answer never fails validation when the session layer adds a key. Routes that
return summaries use ``response_model_exclude_unset`` so a key the dict lacks (``created``
on a live session) stays absent rather than appearing as ``null``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from server.sessions.config import SessionConfig


class Answer(BaseModel):
    """Base of every answer: extra keys are kept, not rejected or dropped."""

    model_config = ConfigDict(extra="allow")


# -- errors ------------------------------------------------------------------------------------
class ErrorBody(Answer):
    """Every 4xx answer: the error code of PROTOCOL.md ("Error codes") and a message;
    ``fields`` (setting name, or "" for the whole form) when settings are to blame."""

    code: str
    message: str
    fields: dict[str, str] | None = None


# -- sessions ----------------------------------------------------------------------------------
class CurrentGeneration(Answer):
    """The generation in flight: its block and how far its presentations and responses are."""

    generation: int
    block: int
    acknowledged: bool
    stimuli: int
    presented: int
    responses: int
    responses_wanted: int
    missing: int


class SessionAlarm(Answer):
    """A condition the operator must act on (server/sessions/alarms.py); active until its
    cause is gone, acknowledged once an operator has seen it."""

    id: int
    #: stall, nan_generation, responses_refused, client_lost, no_presenter or error.
    kind: str
    key: str
    severity: str
    cause: str
    action: str
    generation: int
    raised: float
    count: int
    acknowledged: float | None = None
    cleared: float | None = None
    active: bool


class Progress(Answer):
    """How far and how fast a session goes (server/sessions/progress.py)."""

    #: Wall time of its first start (None: never started).
    started: float | None = None
    #: Seconds spent running, pauses and server downtime left out.
    running_s: float = 0.0
    #: Median seconds per generation of the last 10 (None: fewer than 2 done).
    s_per_generation: float | None = None
    #: Estimated seconds to the last generation (None: not known, or not running).
    eta_s: float | None = None
    #: Responses accepted per second over the last 10 s.
    responses_per_s: float = 0.0


class SessionNote(Answer):
    """An operator's note, stored in the session file."""

    time: float
    generation: int
    text: str


class ThreadSummary(Answer):
    """One evolution thread of a session (``SessionThread.summary``)."""

    index: int
    #: Its label: the thread's name, "channel N" (a thread per channel), or "thread N".
    name: str = ""
    generator: str | None = None
    optimizer: str | None = None
    population: int | None = None
    objective: str | None = None
    start: str | None = None
    best_score: float | None = None
    first_generation_mean: float | None = None
    last_generation_mean: float | None = None
    last_reference_mean: float | None = None


class SessionBase(Answer):
    """The keys a session summary and a session detail share (``Session.summary()``,
    ``StoredSession.summary()``)."""

    id: str
    name: str = ""
    #: created, running, pausing, paused, finished or aborted (a string, or a str enum).
    state: str
    rig: str | None = None
    #: What the score is, in words (e.g. "drive channel(s) 0, hold 1 down").
    objective: str | None = None
    generations_done: int = 0
    best_score: float | None = None
    generations: int | None = None
    population: int | None = None
    generator: str | None = None
    optimizer: str | None = None
    #: None in files from before the device was recorded.
    device: str | None = None
    #: Where the search started, in words ("started from 10 images (exact inversion, ...)");
    #: None: the optimizer's own start.
    start: str | None = None
    #: Every evolution thread (one unless the session runs several); the fields above
    #: (generator, optimizer, population, start, best_score) are thread 0's.
    threads: list[ThreadSummary] = []
    current: CurrentGeneration | None = None
    #: The active alarms, newest first.
    alarms: list[SessionAlarm] = []
    #: Why it is pausing or paused: "operator", or the kind of alarm that paused it.
    pause_reason: str | None = None
    progress: Progress | None = None
    failure: str | None = None
    data_file: str | None = None
    #: Creation time (Unix seconds); given for past sessions only.
    created: float | None = None


class SessionSummary(SessionBase):
    """One session in a list, or the answer to creating or controlling one."""

    #: How many warnings the session has raised so far.
    warnings: int = 0


class LoopLatency(Answer):
    """Seconds from a generation's last response to the next generation leaving the server."""

    last: float | None = None
    median: float | None = None


class ReferenceScore(Answer):
    """A natural reference image's mean score, over ``showings`` generations."""

    image: int
    mean: float
    showings: int


class SessionHistory(Answer):
    """Per-generation numbers from generation ``start`` on (``History.as_json``); None
    where a generation had no valid score."""

    start: int = 0
    max: list[float | None] = []
    mean: list[float | None] = []
    reference_mean: list[float | None] = []
    #: The evolved images' scores in the last complete generation.
    last_scores: list[float | None] = []
    #: Per generation: the position of its best image (None: none scored).
    best_positions: list[int | None] = []
    #: Per generation: mean count per recorded channel of the evolved (``channels``) and
    #: the reference images (None: no response), every channel the recorder sent.
    channels: list[list[float | None] | None] = []
    reference_channels: list[list[float | None] | None] = []
    #: Each reference image shown: its mean score over the generations that scored it.
    references: list[ReferenceScore] = []
    loop_latency_s: LoopLatency = LoopLatency()


class SessionWarning(Answer):
    """Something the operator should see (a block re-presented, a presenter lost, ...)."""

    seq: int
    time: float
    generation: int
    kind: str
    #: critical, warning or info.
    severity: str
    message: str


class SessionDetail(SessionBase):
    """One session with its settings, history and recent warnings."""

    config: SessionConfig
    #: Thread 0's history (the session's, with one thread).
    history: SessionHistory
    #: Each thread's history, given when the session runs several threads.
    thread_histories: list[SessionHistory] = []
    warnings: list[SessionWarning] = []
    #: Every alarm the session raised (the last 100), active ones first.
    alarm_log: list[SessionAlarm] = []
    notes: list[SessionNote] = []


class PastSession(Answer):
    """A session file this server run does not hold (``list_stored``)."""

    id: str
    name: str = ""
    state: str
    created: float
    generator: str | None = None
    data_file: str
    #: What is wrong with a file in state ``damaged`` (it stays in the data folder).
    problem: str | None = None


class SessionList(Answer):
    """This run's sessions, and the past ones in the data folder (newest first)."""

    sessions: list[SessionSummary]
    past: list[PastSession]


class Accepted(Answer):
    """How many of the posted presentations were new, and how many repeats of ones already
    taken (counted, not stored again), as ``responses_ack`` counts responses."""

    accepted: int
    duplicates: int


# -- the server --------------------------------------------------------------------------------
class Health(Answer):
    """Whether the server answers, how many sessions it holds and where they compute."""

    status: str
    sessions: int
    device: str


class GeneratorOption(Answer):
    """A generator and whether it can be built now (its weights are installed)."""

    name: str
    available: bool
    default: bool


class OptimizerOption(Answer):
    """An optimizer, with the first line of its documentation."""

    name: str
    description: str
    default: bool
    #: Images per generation of its preset, per generator.
    population: dict[str, int] = {}


class Options(Answer):
    """What the new-session form offers, and every setting's default."""

    generators: list[GeneratorOption]
    optimizers: list[OptimizerOption]
    defaults: SessionConfig
