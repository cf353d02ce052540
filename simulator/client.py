"""``xdream simulate``: a whole rig (presenter and recorder) played by ConvNet units.

It speaks the same protocol as a real rig, so a session can be dry-run end to end: receive
a block, "present" every stimulus as often as asked, optionally abort some trials (broken
fixation) and delay the replies, and send one spike count per channel per presentation.
Channel ``k`` is unit ``CHANNEL + k`` of the target's layer, so ``--channels 4`` records four
neighbouring units and a session can choose which of them to optimise.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from protocol.messages import Presentation, Response
from rig_clients.connection import Connection, RequestFailed
from rig_clients.presenter import Block, Presenter
from rig_clients.recorder import Recorder
from server.engine.natural_images import reference_crops
from simulator.neuron import SimulatedNeurons, build_neurons
from simulator.noise import parse_noise
from simulator.target import channel_targets

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass
class SimulatorConfig:
    """The simulated units and how they behave (the connection is given apart)."""

    target: str = "efficientnet-lite0:_fc:1"
    noise: str = "poisson:20"
    channels: int = 1
    abort_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int = 0
    device: str = "auto"
    #: Natural crops used to calibrate the Poisson noise.
    references: int = 100


class SimulatedRig:
    """Presents blocks to simulated neurons and reports spikes, like a rig would."""

    def __init__(
        self,
        connection: Connection,
        neurons: SimulatedNeurons,
        abort_rate: float = 0.0,
        latency_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.connection = connection
        self.presenter = Presenter(connection)
        self.recorder = Recorder(connection)
        self.neurons = neurons
        self.abort_rate = abort_rate
        self.latency_s = latency_s
        self.rng = np.random.default_rng(seed)
        self.blocks = 0
        self._clock = time.monotonic
        self._worker = concurrent.futures.ThreadPoolExecutor(1, "simulated-neurons")

    def _counts(self, activations: np.ndarray) -> np.ndarray:
        noise = self.neurons.noise
        return np.maximum(activations, 0.0) if noise is None else noise.spikes(activations)

    def _in_background(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread while this one keeps the connection alive: a forward
        pass can take longer than the server waits for a heartbeat."""
        future = self._worker.submit(work)
        self.connection.wait(future.done)
        return future.result()

    def handle(self, block: Block) -> None:
        """Show every stimulus of ``block`` as often as asked and report it."""
        images = np.stack([np.asarray(im)[..., :3] for im in block.images])
        activations = self._in_background(lambda: self.neurons.recording.activations(images))
        presentations, responses = [], []
        for i, stimulus in enumerate(block.stimuli):
            for repeat in range(stimulus.repeats):
                pid = block.presentation_id(stimulus.stimulus_id, repeat)
                aborted = self.rng.random() < self.abort_rate
                presentations.append(
                    Presentation(
                        presentation_id=pid,
                        stimulus_id=stimulus.stimulus_id,
                        onset=self._clock(),
                        outcome="aborted" if aborted else "ok",
                    )
                )
                if not aborted:
                    counts = self._counts(activations[i])
                    responses.append(
                        Response(
                            presentation_id=pid,
                            stimulus_id=stimulus.stimulus_id,
                            counts=counts.tolist(),
                        )
                    )
        if self.latency_s:
            until = time.monotonic() + self.latency_s
            self.connection.wait(lambda: time.monotonic() >= until)
        self.presenter.report(block, presentations)
        if responses:
            try:
                self.recorder.send(block.session, block.generation, responses)
            except RequestFailed as exc:  # e.g. late after a timeout: the server has said so
                log.warning(
                    "responses to %s generation %d refused: %s",
                    block.session,
                    block.generation,
                    exc,
                )
        self.blocks += 1

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Serve blocks until ``should_stop()``; errors from the server are logged."""
        while not should_stop():
            block = self.presenter.next_block(timeout_s=0.5)
            if block is not None:
                self.handle(block)
            for message in self.presenter.other:
                log.warning("server says: %s", message.content)
            self.presenter.other.clear()


def build(config: SimulatorConfig, connection: Connection) -> SimulatedRig:
    """Load the network, calibrate the noise, then register ``connection`` (as presenter
    and recorder) with the server; raises XDreamError on bad input."""
    spikes = parse_noise(config.noise)
    refs = reference_crops(224, config.references, seed=config.seed) if spikes else None
    neurons, _ = build_neurons(
        channel_targets(config.target, config.channels),
        spikes,
        refs,
        seed=config.seed,
        device=config.device,
    )
    connection.connect()
    return SimulatedRig(
        connection, neurons, config.abort_rate, config.latency_ms / 1000.0, config.seed
    )
