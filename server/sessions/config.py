"""What an operator chooses when creating a session, validated at the boundary (REST or CLI).

Names (generator, optimizer) are checked against the registries when the session is built,
so one list of valid names exists; this model checks shapes and ranges.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.messages import PresentationParams
from server.engine.plan import GeneratorChoice, choose_generator

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class SessionConfig(BaseModel):
    """One evolution on one rig. Defaults suit a monkey rig with the offline generator."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)] = ""
    #: ``hello.name`` of the presenter that shows this session; None = any presenter.
    rig: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    #: None = DeePSiM-fc6 when its weights are installed, else the offline default.
    generator: str | None = None
    weights: str | None = None
    image_size: Annotated[int, Field(ge=8, le=4096)] | None = None
    #: None = the benchmark winner (``cmaes``).
    optimizer: str | None = None
    population: Annotated[int, Field(ge=2, le=1000)] | None = None
    #: Further optimizer settings, e.g. ``{"sigma0": 2.0}``.
    settings: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    #: Stop after this many evolved images ...
    budget: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    #: ... or after this many generations (give one of the two; default 3,000 images).
    generations: Annotated[int, Field(ge=1, le=100_000)] | None = None
    #: Recorded channels whose counts make the score, and how: their mean, or with
    #: ``weights`` their weighted sum.
    channels: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = [0]
    channel_weights: list[float] | None = None
    #: Natural reference images shown per generation (scored and logged, never optimised).
    references_per_generation: Annotated[int, Field(ge=0, le=1000)] = 0
    #: Folder of reference photos, cycled; None = scikit-image's bundled photographs.
    reference_folder: str | None = None
    #: Presentations averaged per image.
    repeats: Annotated[int, Field(ge=1, le=100)] = 1
    #: Seconds without any presentation or response before missing stimuli are re-presented.
    response_timeout_s: PositiveSeconds = 30.0
    #: Re-presentation blocks per generation before missing stimuli score NaN.
    max_represent: Annotated[int, Field(ge=0, le=100)] = 3
    params: PresentationParams = PresentationParams()
    #: auto, cpu, cuda or cuda:N; None = the server's (``xdream serve --device``).
    device: str | None = None
    #: The generator's arithmetic: float16 or bfloat16 run it in half precision (faster on
    #: GPUs; images change by about a grey level: docs/BENCHMARKS.md, "Half precision").
    precision: Literal["float32", "float16", "bfloat16"] = "float32"

    @model_validator(mode="after")
    def _consistent(self) -> SessionConfig:
        if self.budget is not None and self.generations is not None:
            raise ValueError("give budget (images) or generations, not both")
        if self.channel_weights is not None and len(self.channel_weights) != len(self.channels):
            raise ValueError(
                f"channel_weights has {len(self.channel_weights)} entries "
                f"for {len(self.channels)} channels"
            )
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        if self.population is not None and "population" in self.settings:
            raise ValueError("give population once (field or settings), not both")
        return self

    def generator_choice(self, server_device: str) -> GeneratorChoice:
        """The generator these settings name, on their device or else ``server_device``."""
        return choose_generator(
            self.generator,
            self.weights,
            self.image_size,
            self.device or server_device,
            self.precision,
        )
