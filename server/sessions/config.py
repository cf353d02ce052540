"""What an operator chooses when creating a session, validated at the boundary (REST or CLI).

Names (generator, optimizer) are checked against the registries when the session is built,
so one list of valid names exists; this model checks shapes and ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.errors import ConfigError
from protocol.messages import PresentationParams
from server.engine.device import DEVICE_PATTERN
from server.engine.objectives import Mean, Objective
from server.engine.optimizers.base import MAX_POPULATION
from server.engine.plan import GeneratorChoice, choose_generator

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
#: A file or folder on the server.
ServerPath = Annotated[str, Field(min_length=1, max_length=4096)]
#: What a name typed by an operator may be (a registry checks it further).
Name = Annotated[str, Field(min_length=1, max_length=64)]
#: One channel's weight in the score: finite, and small enough that a sum cannot overflow.
Weight = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
#: The settings a session and a thread of it may set alike.
Population = Annotated[int, Field(ge=2, le=MAX_POPULATION)]
OptimizerSettings = Annotated[dict[Name, Any], Field(max_length=32)]
Channels = Annotated[
    list[Annotated[int, Field(ge=0, le=4095)]], Field(min_length=1, max_length=4096)
]
ChannelWeights = Annotated[list[Weight], Field(max_length=4096)]


#: Most threads a session runs: each shows a whole population in every block.
MAX_THREADS = 16
#: The session's settings a thread's own setting overrules (:meth:`thread_configs`).
_OVERRULED = {
    "objective": ("objective", "channels", "channel_weights"),
    "channels": ("objective", "channel_weights"),
    "channel_weights": ("objective",),
    "optimizer": ("settings",),
}


class ThreadConfig(BaseModel):
    """One evolution thread of a session: what it sets differently from the session. Each
    field left out (None) is the session's, except where a thread's own setting overrules
    others (:meth:`SessionConfig.thread_configs`); ``name`` labels it on the dashboard."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=64)] = ""
    generator: Name | None = None
    weights: ServerPath | None = None
    optimizer: Name | None = None
    population: Population | None = None
    settings: OptimizerSettings | None = None
    objective: Objective | None = None
    channels: Channels | None = None
    channel_weights: ChannelWeights | None = None
    init_images: ServerPath | None = None


#: Settings added after sessions were first stored, with the value a session stored before
#: them ran with: a session resumed (or read) from such a file goes on as it began.
BEFORE_ADDED: dict[str, Any] = {"subtract_baseline": False}


class SessionConfig(BaseModel):
    """One evolution on one rig. Defaults suit a monkey rig with the offline generator."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)] = ""
    #: The animal (or the model, in silico), as the lab names it; kept in the file and in
    #: NWB exports (``Subject.subject_id``).
    subject: Annotated[str, Field(max_length=64)] = ""
    #: The subject's species, as a Latin binomial (``Macaca mulatta``), and its age as an
    #: ISO 8601 duration (``P6Y``): what NWB archives (DANDI) require of a subject.
    species: Annotated[str, Field(max_length=100)] = ""
    subject_age: Annotated[str, Field(max_length=32, pattern=r"^(P[0-9WYMDTHS.]*)?$")] = ""
    #: Who runs the session (NWB's ``experimenter``).
    experimenter: Annotated[str, Field(max_length=200)] = ""
    #: ``hello.name`` of the presenter that shows this session; None = any presenter.
    rig: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    #: None = DeePSiM-fc6 when its weights are installed, else the offline default.
    generator: Name | None = None
    weights: ServerPath | None = None
    image_size: Annotated[int, Field(ge=8, le=4096)] | None = None
    #: None = the benchmark winner (``cmaes``).
    optimizer: Name | None = None
    population: Population | None = None
    #: Further optimizer settings, e.g. ``{"sigma0": 2.0}``; checked by the optimizer's own
    #: settings class when the session is created.
    settings: OptimizerSettings = Field(default_factory=dict)
    #: Seeds the optimizer and the reference crops (numpy takes 0 .. 2**32 - 1).
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    #: Stop after this many evolved images ...
    budget: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    #: ... or after this many generations (give one of the two; default 3,000 images).
    generations: Annotated[int, Field(ge=1, le=100_000)] | None = None
    #: Recorded channels whose counts make the score, and how: their mean, or with
    #: ``weights`` their weighted sum (the ``mean`` objective; ``objective`` for others).
    channels: Channels = [0]
    channel_weights: ChannelWeights | None = None
    #: What the score is (server/engine/objectives.py): raise or lower a mean, selectivity,
    #: a target pattern, sparseness. None = the mean of ``channels`` (give one or the other).
    objective: Objective | None = None
    #: Natural reference images shown per generation (scored and logged, never optimised).
    references_per_generation: Annotated[int, Field(ge=0, le=1000)] = 0
    #: Folder of reference photos, cycled; None = scikit-image's bundled photographs.
    reference_folder: ServerPath | None = None
    #: Folder of images (on the server, inside a reference root) the first generation starts
    #: from, the first ``population`` by file name: inverted into the generator's codes
    #: (server/engine/inversion.py), the GA's first generation, CMA-ES's best or mean (its
    #: ``seeds`` setting). None = the optimizer's own start. Inverted when the session is
    #: made, and again on a resume before the first generation is stored (the folder as it
    #: is then); once the optimizer's state is stored, that is where it goes on from.
    init_images: ServerPath | None = None
    #: Score a response that carries baseline counts as its evoked count minus the baseline
    #: count scaled to the evoked window's length (rates subtracted, as Ponce lab's pipeline
    #: does); False scores the evoked count alone. Stored counts are the rig's either way.
    subtract_baseline: bool = True
    #: Presentations averaged per image.
    repeats: Annotated[int, Field(ge=1, le=100)] = 1
    #: Seconds without any presentation or response before missing stimuli are re-presented.
    response_timeout_s: PositiveSeconds = 30.0
    #: Re-presentation blocks per generation before missing stimuli score NaN.
    max_represent: Annotated[int, Field(ge=0, le=100)] = 3
    #: Seconds without a trial reported by the rig, while a block is out, before a stall alarm;
    #: None = twice the block's own duration (stimuli x repeats x on+off), at least 10 s.
    stall_timeout_s: PositiveSeconds | None = None
    #: Pause the session on a stall, a mostly-unanswered generation or refused responses,
    #: before the optimizer is given bad scores (server/sessions/alarms.py).
    auto_pause: bool = True
    params: PresentationParams = PresentationParams()
    #: auto, cpu, cuda or cuda:N; None = the server's (``xdream serve --device``).
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] | None = None
    #: The generator's arithmetic: float16 or bfloat16 run it in half precision (faster on
    #: GPUs; images change by about a grey level: docs/BENCHMARKS.md, "Half precision").
    precision: Literal["float32", "float16", "bfloat16"] = "float32"
    #: Interleaved evolutions on the same rig (the reference XDream's threads, a DeePSiM
    #: thread beside another generator's): each its own generator, optimizer and score,
    #: shown in the same blocks in random order. Empty = one thread, the session's own.
    threads: Annotated[list[ThreadConfig], Field(max_length=MAX_THREADS)] = Field(
        default_factory=list
    )
    #: One thread per channel of ``channels``, each raising that channel's mean: an array
    #: session that evolves an image for each of several sites at once.
    thread_per_channel: bool = False

    # Checks that involve two fields sit on the later one, so the error names a field.
    @field_validator("generations")
    @classmethod
    def _one_length(cls, generations: int | None, info: ValidationInfo) -> int | None:
        if generations is not None and info.data.get("budget") is not None:
            raise ValueError("give budget (images) or generations, not both")
        return generations

    @field_validator("settings")
    @classmethod
    def _population_once(cls, settings: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("population") is not None and "population" in settings:
            raise ValueError("give population once (field or settings), not both")
        return settings

    @field_validator("channels")
    @classmethod
    def _distinct(cls, channels: list[int]) -> list[int]:
        if len(set(channels)) != len(channels):
            raise ValueError("channels must not repeat")
        return channels

    @field_validator("channel_weights")
    @classmethod
    def _weight_per_channel(
        cls, weights: list[float] | None, info: ValidationInfo
    ) -> list[float] | None:
        channels = info.data.get("channels")
        if weights is not None and channels is not None and len(weights) != len(channels):
            raise ValueError(
                f"channel_weights has {len(weights)} entries for {len(channels)} channels"
            )
        return weights

    @field_validator("objective")
    @classmethod
    def _objective_or_channels(
        cls, objective: Objective | None, info: ValidationInfo
    ) -> Objective | None:
        if objective is not None and (
            info.data.get("channels") != [0] or info.data.get("channel_weights") is not None
        ):
            raise ValueError("give objective or channels and channel_weights, not both")
        return objective

    @model_validator(mode="after")
    def _threads_resolve(self) -> SessionConfig:
        if self.thread_per_channel and self.threads:
            raise ValueError("give threads or thread_per_channel, not both")
        if self.thread_per_channel and (self.objective or self.channel_weights):
            raise ValueError("thread_per_channel scores each channel's mean: no objective")
        if self.thread_per_channel and len(self.channels) > MAX_THREADS:
            raise ValueError(f"thread_per_channel runs at most {MAX_THREADS} channels")
        self.thread_configs()  # each thread's settings are valid together
        return self

    def thread_settings(self) -> list[dict[str, Any]]:
        """What each thread sets for itself (one thread of its own: empty)."""
        if self.thread_per_channel:
            return [{"channels": [channel]} for channel in self.channels]
        return [t.model_dump(exclude_none=True, exclude={"name"}) for t in self.threads]

    def thread_configs(self) -> list[SessionConfig]:
        """Each thread's settings, as a one-thread session's: the session's, with what the
        thread sets instead and seed ``seed + k``, so that two threads alike do not show the
        same images. A thread's score fields replace the session's that they overrule (an
        ``objective`` all of them, ``channels`` the objective and weights, ``channel_weights``
        the objective); a thread's ``optimizer`` comes with its own ``settings`` (the
        session's are another optimizer's). One thread: these settings."""
        overrides = self.thread_settings()
        if not overrides:
            return [self]
        base = self.model_dump(exclude={"threads", "thread_per_channel"})
        resolved = []
        for k, update in enumerate(overrides):
            mine = {**base, "seed": (self.seed + k) % 2**32}
            for name in _OVERRULED:
                if name in update:
                    for field in _OVERRULED[name]:
                        mine.pop(field, None)
            try:
                resolved.append(SessionConfig.model_validate({**mine, **update}))
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"]) or "settings"
                message = str(error["msg"]).removeprefix("Value error, ")
                raise ValueError(f"thread {k}: {where}: {message}") from None
        return resolved

    def thread_names(self) -> list[str]:
        """Each thread's label: its ``name``, the channel it evolves for, or its number."""
        if self.thread_per_channel:
            return [f"channel {channel}" for channel in self.channels]
        if not self.threads:
            return [""]
        return [t.name or f"thread {k}" for k, t in enumerate(self.threads)]

    def channels_used(self) -> list[int]:
        """Every recorded channel a thread's score reads (the rig must record each)."""
        return sorted({c for t in self.thread_configs() for c in t.scoring().channels_used()})

    def describe_objective(self) -> str:
        """What the session optimises, in words: its objective, or each thread's."""
        configs = self.thread_configs()
        if len(configs) == 1:
            return self.scoring().describe()
        return "; ".join(
            f"{name}: {c.scoring().describe()}"
            for name, c in zip(self.thread_names(), configs, strict=True)
        )

    def scoring(self) -> Objective:
        """The objective the session scores with (one thread's: :meth:`thread_configs`)."""
        if self.objective is not None:
            return self.objective
        return Mean(channels=self.channels, weights=self.channel_weights)

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> SessionConfig:
        """The config a session file keeps (:data:`BEFORE_ADDED` for what it predates)."""
        return cls.model_validate({**BEFORE_ADDED, **stored})

    def confined(
        self, weights_roots: Sequence[Path], reference_roots: Sequence[Path]
    ) -> SessionConfig:
        """These settings with ``weights``, ``reference_folder`` and ``init_images`` as real
        paths inside the folders the server was started with (relative ones taken from the
        first). A path elsewhere is refused with the same words whether it exists or not, so
        a request learns nothing about the server's disk outside them."""
        return self.model_copy(
            update={
                **_confined(self, "", weights_roots, reference_roots),
                "reference_folder": confine(
                    self.reference_folder, reference_roots, "reference_folder", "reference-root"
                ),
                "threads": [
                    t.model_copy(
                        update=_confined(t, f"threads.{k}.", weights_roots, reference_roots)
                    )
                    for k, t in enumerate(self.threads)
                ],
            }
        )

    def generator_choice(self, server_device: str) -> GeneratorChoice:
        """The generator these settings name, on their device or else ``server_device``."""
        return choose_generator(
            self.generator,
            self.weights,
            self.image_size,
            self.device or server_device,
            self.precision,
        )


def _confined(
    settings: SessionConfig | ThreadConfig,
    prefix: str,
    weights_roots: Sequence[Path],
    reference_roots: Sequence[Path],
) -> dict[str, str | None]:
    """``settings``' ``weights`` and ``init_images`` confined (:func:`confine`; the field
    named with ``prefix``)."""
    return {
        "weights": confine(settings.weights, weights_roots, f"{prefix}weights", "weights-root"),
        "init_images": confine(
            settings.init_images, reference_roots, f"{prefix}init_images", "reference-root"
        ),
    }


def confine(text: str | None, roots: Sequence[Path], field: str, option: str) -> str | None:
    """``text`` as a real path inside one of ``roots`` (ConfigError naming ``field`` if not)."""
    if text is None:
        return None
    candidate = Path(text).expanduser()
    if not candidate.is_absolute() and roots:
        candidate = roots[0] / candidate
    real = candidate.resolve()  # "..", and symbolic links leading out, resolved away
    if any(real.is_relative_to(root.resolve()) for root in roots):
        return str(real)
    allowed = ", ".join(str(root) for root in roots) or "none"
    raise ConfigError(
        f"{field} must be inside the folders this server serves ({allowed}; "
        f"`xdream serve --{option} DIR` adds one)",
        field=field,
    )
