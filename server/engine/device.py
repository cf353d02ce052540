"""Choosing the torch device: the GPU when present, the CPU otherwise.

torch is imported only when a device is resolved, so that settings can be checked against
:data:`DEVICE_PATTERN` without it (``xdream health`` runs every few seconds in a container).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from protocol.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: The devices a user may name (torch knows more, e.g. ``meta``, that cannot run a session).
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]{1,2})?)$"


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a usable ``torch.device``."""
    import torch

    if not re.fullmatch(DEVICE_PATTERN, name):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but torch sees no CUDA GPU")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}: {exc}") from None
