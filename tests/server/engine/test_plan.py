"""plan_run: the optimizer a run gets from its generator, settings and budget."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import ConfigError
from server.engine.generators import make_generator
from server.engine.optimizers import Optimizer
from server.engine.plan import plan_run


def test_a_coarse_to_fine_search_gets_the_generators_frequencies():
    fourier = make_generator("fourier", resolution=16, device="cpu")
    plan = plan_run(fourier, "cmaes", settings={"band_start": 2.0}, budget=400)
    np.testing.assert_array_equal(plan.optimizer.frequencies, fourier.code_frequencies())
    # and a session resumed from the stored state has them without the generator
    restored = plan_run(fourier, "cmaes", state=plan.optimizer.state_dict(), budget=400)
    np.testing.assert_array_equal(restored.optimizer.ask(), plan.optimizer.ask())
    assert isinstance(restored.optimizer, Optimizer)


def test_coarse_to_fine_on_codes_without_frequencies_blames_the_settings():
    pixel = make_generator("pixel", device="cpu")
    with pytest.raises(ConfigError, match="spatial frequency of every code") as caught:
        plan_run(pixel, "cmaes", settings={"band_start": 2.0}, budget=400)
    assert caught.value.field == "settings"
    assert plan_run(pixel, "cmaes", budget=400).optimizer.frequencies is None
