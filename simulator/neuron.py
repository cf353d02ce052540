"""Simulated neurons: recorded units plus optional Poisson spiking, one call per batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protocol.errors import ConfigError
from simulator.networks import load_network
from simulator.noise import PoissonNoise
from simulator.target import Recording, TargetSpec


class SimulatedNeurons:
    """Responses of the units of ``recording`` to images, noisy when ``noise`` is set.

    ``respond`` returns both the observed responses (what a rig would report) and the
    noiseless activations (what only a simulation knows), each ``(n, units)``.
    """

    def __init__(self, recording: Recording, noise: PoissonNoise | None = None) -> None:
        self.recording = recording
        self.noise = noise

    def respond(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        true = self.recording.activations(images)
        observed = true if self.noise is None else self.noise(true)
        return observed, true


def build_neurons(
    targets: Sequence[str],
    spikes: float | None,
    references: np.ndarray | None,
    repeats: int = 1,
    seed: int = 0,
    input_size: int | None = None,
    device: str = "auto",
    network_weights: str | None = None,
) -> tuple[SimulatedNeurons, np.ndarray | None]:
    """Neurons for ``targets`` (one network) and their activations to ``references``.

    ``spikes`` = K calibrates Poisson noise so the expected best of 2,500 natural images
    evokes K spikes; it needs reference images.
    """
    specs = [TargetSpec.parse(t) for t in targets]
    networks = {s.network for s in specs}
    if len(networks) != 1:
        raise ConfigError(f"all targets must be on one network, got {sorted(networks)}")
    network = load_network(specs[0].network, network_weights)
    recording = Recording(network, [s.unit for s in specs], device=device, input_size=input_size)
    ref_acts = (
        None if references is None or len(references) == 0 else recording.activations(references)
    )
    noise = None
    if spikes is not None:
        if ref_acts is None:
            raise ConfigError("Poisson noise needs reference images to calibrate")
        noise = PoissonNoise.calibrated(ref_acts, spikes, repeats=repeats, seed=seed + 1)
    return SimulatedNeurons(recording, noise), ref_acts
