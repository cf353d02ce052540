"""``xdream evolve``: one closed-loop run against a simulated neuron, in process (the
engine driven directly, no rig server).

Everything that can be wrong with the request (target, weights, budget, settings) is checked
in :func:`prepare`, before any file is written; :func:`run` then streams every generation to
``DIR/session.h5`` and writes the pictures only when the run completes.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ConfigError
from server.engine import pictures as report
from server.engine.generators import Generator
from server.engine.inversion import Inversion, start_from_images
from server.engine.loop import Engine, GenerationResult, run_in_process
from server.engine.natural_images import reference_crops
from server.engine.objectives import Mean, Objective, parse_objective
from server.engine.optimizers import Optimizer
from server.engine.plan import RunPlan, choose_generator, plan_run
from server.engine.statistics import History
from server.sessions.states import SessionState
from server.storage.session_file import SessionFile
from simulator.neuron import SimulatedNeurons, build_neurons
from simulator.noise import parse_noise
from simulator.target import channel_targets


@dataclass
class EvolveConfig:
    target: str
    out: str
    generator: str
    optimizer: str
    budget: int = 3000
    noise: str = "none"
    repeats: int = 1
    seed: int = 0
    weights: str | None = None
    image_size: int | None = None
    input_size: int | None = None
    device: str = "auto"
    references: int = 100
    reference_folder: str | None = None
    network_weights: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: Units recorded in one forward pass: channel k is unit ``target + k`` (as
    #: ``xdream simulate --channels``).
    channels: int = 1
    #: What is maximised, as ``parse_objective`` reads it; None = channel 0's response.
    objective: str | None = None
    #: Folder of images the first generation starts from (server/engine/inversion.py).
    init_images: str | None = None
    #: The generator's own settings (e.g. ``{"resolution": 16}`` for a coarser fourier code).
    generator_settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    config: EvolveConfig
    generator: Generator
    plan: RunPlan
    neurons: SimulatedNeurons
    objective: Objective
    #: The best natural image's noiseless score.
    reference_best: float | None
    #: The images the run starts from, inverted (None: the optimizer's own start).
    inversion: Inversion | None = None

    @property
    def optimizer(self) -> Optimizer:
        return self.plan.optimizer

    @property
    def generations(self) -> int:
        return self.plan.generations


def prepare(config: EvolveConfig) -> Prepared:
    """Build and check every part of the run; raises ``XDreamError`` subclasses, writes nothing."""
    if (Path(config.out) / "session.h5").exists():
        raise ConfigError(f"{Path(config.out) / 'session.h5'} already exists; choose a new --out")
    spikes = parse_noise(config.noise)
    if config.repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {config.repeats}")
    if not 1 <= config.channels <= 4096:
        raise ConfigError(f"channels must be 1 to 4096, got {config.channels}")
    objective = Mean() if config.objective is None else parse_objective(config.objective)
    if max(objective.channels_used()) >= config.channels:
        raise ConfigError(
            f"the objective reads channel {max(objective.channels_used())}; --channels "
            f"{config.channels} records 0 to {config.channels - 1}",
            field="objective",
        )
    if spikes is not None and config.references < 1:
        raise ConfigError("Poisson noise is calibrated on reference images; --references >= 1")
    generator = build_generator(config)
    plan = plan_run(generator, config.optimizer, config.seed, config.settings, budget=config.budget)
    inversion = None
    if config.init_images is not None:
        inversion = start_from_images(plan.optimizer, generator, config.init_images)
    neurons, ref_acts = build_recording(config, generator.image_size, spikes)
    ref_best = None if ref_acts is None else float(objective.score(ref_acts).max())
    return Prepared(config, generator, plan, neurons, objective, ref_best, inversion)


def build_generator(config: EvolveConfig) -> Generator:
    """The run's generator, as its settings name it."""
    return choose_generator(
        config.generator, config.weights, config.image_size, config.device,
        settings=config.generator_settings,
    ).build()  # fmt: skip


def build_recording(
    config: EvolveConfig, image_size: int, spikes: float | None
) -> tuple[SimulatedNeurons, np.ndarray | None]:
    """The run's units (noisy with ``spikes``), and their activations to its reference
    images (natural crops of ``image_size``; None without references)."""
    refs = None
    if config.references:
        refs = reference_crops(image_size, config.references, config.reference_folder,
                               seed=config.seed)  # fmt: skip
    return build_neurons(
        channel_targets(config.target, config.channels),
        spikes,
        refs,
        repeats=config.repeats,
        seed=config.seed,
        input_size=config.input_size,
        device=config.device,
        network_weights=config.network_weights,
    )


class _Pictures:
    """What the pictures need beyond the statistics, not the images of every generation:
    the best image, one image per montage tile, and the noiseless maxima."""

    def __init__(self, generations: int, montage_tiles: int = 18) -> None:
        self.true_maxima: list[float] = []
        #: Mean noiseless response per channel, of the first and of the latest generation.
        self.channel_means: list[np.ndarray] = []
        self.best_image: np.ndarray | None = None
        self.montage: dict[int, np.ndarray] = {}
        picks = np.linspace(0, generations - 1, min(montage_tiles, generations))
        self._montage_at = {round(float(i)) for i in picks}

    def __call__(self, result: GenerationResult, new_best: bool) -> None:
        """Keep what ``result`` adds; ``new_best``: its best score is the run's best so far."""
        scores = result.scores
        self.true_maxima.append(float(result.extra["true_score"].max()))
        means = np.atleast_1d(result.extra["activation"].mean(axis=0))
        if self.channel_means:
            self.channel_means[1:] = [means]
        else:
            self.channel_means.append(means)
        if (~np.isnan(scores)).any():
            best = int(np.nanargmax(scores))
            if new_best:
                self.best_image = result.images[best]
            if result.index in self._montage_at:
                self.montage[result.index] = result.images[best]


def run(
    prepared: Prepared, progress: Callable[[int, int, History], None] | None = None
) -> dict[str, Any]:
    """Run the session and write its outputs; returns the summary printed by ``--json``."""
    cfg = prepared.config
    out = Path(cfg.out)
    noise = prepared.neurons.noise
    config = {
        **asdict(cfg),
        "population": prepared.optimizer.population,
        "generations": prepared.generations,
        "optimizer_settings": asdict(prepared.optimizer.settings),
        # spikes per unit of activation: observed = Poisson(activation * scale) / scale
        "noise_scale": None if noise is None else float(noise.scale[0]),
        "inversion": _inverted(prepared),
    }
    store = SessionFile(out / "session.h5", config)
    engine = Engine(prepared.generator, prepared.optimizer, store)
    history, pictures = History(), _Pictures(prepared.generations)

    def score(images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        observed, true = prepared.neurons.respond(images)
        objective = prepared.objective
        return objective.score(observed), {
            "activation": true if true.shape[1] > 1 else true[:, 0],
            "true_score": objective.score(true),
        }

    def on_generation(result: GenerationResult) -> None:
        pictures(result, history.record(result.scores))
        if progress is not None:
            progress(result.index + 1, prepared.generations, history)

    started = time.perf_counter()
    try:
        run_in_process(engine, score, prepared.generations, on_generation)
    except BaseException:
        store.close(SessionState.aborted.value)
        raise
    seconds = time.perf_counter() - started
    store.close(SessionState.finished.value)
    _write_pictures(out, prepared, history, pictures)
    return {  # floats as they are (NaN where no score came), as --json has always printed
        "best_score": history.best_score,
        "best_activation": float(np.nanmax(pictures.true_maxima)),
        "first_generation_mean": history.means[0],
        "last_generation_mean": history.means[-1],
        "best_reference": prepared.reference_best,
        "images": prepared.generations * prepared.optimizer.population,
        "generations": prepared.generations,
        "seconds": round(seconds, 3),
        "generator": cfg.generator,
        "optimizer": cfg.optimizer,
        "target": cfg.target,
        "objective": prepared.objective.describe(),
        # Noiseless mean response per channel, first and last generation.
        "first_channel_means": pictures.channel_means[0].tolist(),
        "last_channel_means": pictures.channel_means[-1].tolist(),
        # The best noiseless score of each generation: the run's learning curve.
        "generation_maxima": [round(m, 6) for m in pictures.true_maxima],
        "inversion": _inverted(prepared),
        "data_file": str(out / "session.h5"),
    }


def _inverted(prepared: Prepared) -> dict[str, Any] | None:
    """What the file and the summary say about the images the run started from."""
    return None if prepared.inversion is None else dict(prepared.inversion.summary())


def _write_pictures(out: Path, prepared: Prepared, history: History, pictures: _Pictures) -> None:
    cfg = prepared.config
    tmp = out / ".pictures.tmp"
    tmp.mkdir(exist_ok=True)
    if pictures.best_image is not None:
        report.save_best(pictures.best_image, tmp / "best.png")
    report.save_progress(
        np.array(history.maxima),
        np.array(history.means),
        tmp / "progress.png",
        f"{cfg.target}  {cfg.generator} + {cfg.optimizer}  noise {cfg.noise}",
        prepared.reference_best,
        prepared.optimizer.population,
    )
    gens = sorted(pictures.montage)
    report.montage([pictures.montage[g] for g in gens], [f"gen {g}" for g in gens]).save(
        tmp / "montage.png"
    )
    for picture in tmp.iterdir():
        picture.replace(out / picture.name)
    shutil.rmtree(tmp)
