"""Image generators by name: the DeePSiM family, ``pixel`` and ``fourier``.

Use :func:`make_generator` rather than the classes, so that names typed by users are
checked in one place and the offline default is chosen consistently.
"""

from __future__ import annotations

import inspect

from protocol.errors import ConfigError, XDreamError
from server.engine.generators import deepsim, fourier, pixel  # noqa: F401  (registers the classes)
from server.engine.generators.base import GENERATORS, Generator
from server.engine.generators.weights import weights_path

#: Generator used when no DeePSiM weights are installed: the benchmark winner
#: among the weight-free generators (docs/BENCHMARKS.md).
OFFLINE_DEFAULT = "fourier"


def available_generators() -> dict[str, bool]:
    """Every generator name with whether it can be built now (DeePSiM needs its weights)."""
    return {
        name: name not in deepsim.VARIANTS or weights_path(name).is_file()
        for name in GENERATORS.names()
    }


def default_generator() -> str:
    """DeePSiM-fc6 (the paper's default) when its weights are installed, else the offline one."""
    return "fc6" if available_generators()["fc6"] else OFFLINE_DEFAULT


def make_generator(name: str, **kwargs) -> Generator:
    """Build the generator registered as ``name`` (``ConfigError`` for unknown names and
    for settings it does not have)."""
    cls = GENERATORS.get(name)
    known = _settings_of(cls)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(
            f"generator {name} has no setting(s) {', '.join(unknown)}; its settings: "
            f"{', '.join(sorted(known))}"
        )
    try:
        return cls(**kwargs)
    except XDreamError:  # the generator's own check, already saying what is wrong
        raise
    except (TypeError, ValueError) as exc:  # a setting of the wrong type (16.0, "16", null)
        raise ConfigError(f"generator {name}: a setting has the wrong type: {exc}") from None


def _settings_of(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` takes, through its ``**kwargs`` chain up to
    :class:`Generator` (an ``__init__`` without ``**kwargs`` ends the chain)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in parameters if p.name != "self" and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY
        )}  # fmt: skip
        if klass is Generator or not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


__all__ = [
    "GENERATORS",
    "OFFLINE_DEFAULT",
    "Generator",
    "available_generators",
    "default_generator",
    "make_generator",
]
