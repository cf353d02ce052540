"""Simulated neurons: a recording plus optional calibrated Poisson noise."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import ConfigError
from server.engine.natural_images import load_photos, random_crops, reference_crops
from simulator.neuron import build_neurons
from simulator.noise import expected_max
from simulator.target import Recording, TargetSpec

TARGETS = ["efficientnet-lite0:_fc:1", "efficientnet-lite0:_blocks.3:0:2:2"]


def test_targets_on_two_networks_rejected():
    with pytest.raises(ConfigError, match="one network"):
        build_neurons(["efficientnet-lite0:_fc:1", "torchvision:resnet18:fc:1"], None, None)


@pytest.fixture
def shared_lite0(lite0, monkeypatch):
    """build_neurons with the session's network instead of loading a fresh copy."""
    import simulator.neuron

    def load(name, weights=None):
        assert (name, weights) == ("efficientnet-lite0", None)
        return lite0

    monkeypatch.setattr(simulator.neuron, "load_network", load)
    return lite0


def test_spikes_need_references(shared_lite0):
    with pytest.raises(ConfigError, match="reference"):
        build_neurons(TARGETS, 20.0, None, input_size=64, device="cpu")
    with pytest.raises(ConfigError, match="reference"):
        build_neurons(
            TARGETS, 20.0, np.zeros((0, 64, 64, 3), np.uint8), input_size=64, device="cpu"
        )


def test_without_noise_observed_is_true(shared_lite0):
    lite0 = shared_lite0
    neurons, ref_acts = build_neurons(TARGETS, None, None, input_size=64, device="cpu")
    assert ref_acts is None and neurons.noise is None
    images = random_crops(load_photos()[:2], 2, 64, seed=0)
    observed, true = neurons.respond(images)
    assert true.shape == (2, 2)
    np.testing.assert_array_equal(observed, true)
    # the responses are those of the named units
    direct = Recording(
        lite0, [TargetSpec.parse(t).unit for t in TARGETS], device="cpu", input_size=64
    ).activations(images)
    np.testing.assert_allclose(true, direct, rtol=1e-5, atol=1e-5)


def test_with_noise_calibrated_on_references(shared_lite0):
    refs = reference_crops(64, 3, seed=0)
    targets = ["efficientnet-lite0:_blocks.3:0:2:2", "efficientnet-lite0:_conv_head:2"]
    neurons, ref_acts = build_neurons(targets, 10.0, refs, repeats=2, input_size=64, device="cpu")
    assert ref_acts.shape == (3, 2)
    assert (ref_acts.max(axis=0) > 0).all()  # precondition for calibration
    good = np.array([expected_max(ref_acts[:, i], 2500) for i in range(2)])
    np.testing.assert_allclose(neurons.noise.scale * good, 10.0, rtol=1e-12)
    assert neurons.noise.repeats == 2
    observed, true = neurons.respond(refs[:2])
    np.testing.assert_allclose(true, ref_acts[:2], rtol=1e-5, atol=1e-5)
    assert not np.array_equal(observed, true)
    assert (observed >= 0).all()
