"""Where DeePSiM weights live and how a user-supplied file is checked before use.

The weights are not ours to redistribute: users download XDream's converted ``{variant}.pt``
state dicts themselves (docs/weights.md) and either pass ``--weights PATH`` or drop them in
the weights directory: ``$XDREAM_WEIGHTS_DIR``, else the per-user data directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from protocol.errors import WeightsError, one_line

WHERE_TO_GET = (
    "XDream's converted generator files (see docs/weights.md); pass --weights PATH "
    "or put them in $XDREAM_WEIGHTS_DIR"
)


def weights_dir() -> Path:
    """The directory searched for ``{variant}.pt`` when no explicit path is given."""
    env = os.environ.get("XDREAM_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "xdream-rig" / "weights"


def weights_path(variant: str, explicit: str | os.PathLike | None = None) -> Path:
    """The file to load for ``variant``: the explicit path if given, else the default one."""
    return Path(explicit).expanduser() if explicit else weights_dir() / f"{variant}.pt"


def _describe(shapes: dict[str, tuple[int, ...]], limit: int = 4) -> str:
    items = [f"{k}{list(v)}" for k, v in shapes.items()]
    more = f" ... ({len(items)} in all)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_state_dict(
    path: Path, variant: str, expected: dict[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """Read ``path`` and check it holds exactly the ``expected`` keys and shapes.

    Every failure is one line that names the file, what was expected, and where to get it.
    ``weights_only=True`` keeps a malicious file from running code on load.
    """
    if not path.is_file():
        raise WeightsError(
            f"DeePSiM-{variant} weights not found at {path}: expected a state dict with "
            f"{_describe(expected)}; get {WHERE_TO_GET}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise WeightsError(
            f"cannot read DeePSiM-{variant} weights {path}: {one_line(exc)}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a state dict of tensors (DeePSiM-{variant})")
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    wrong = [k for k in expected if k in got and got[k] != expected[k]]
    if missing or extra or wrong:
        problems = []
        if missing:
            problems.append(f"missing {_describe({k: expected[k] for k in missing})}")
        if extra:
            problems.append(f"unexpected {_describe({k: got[k] for k in extra})}")
        if wrong:
            problems.append(
                "wrong shape "
                + ", ".join(f"{k} {list(got[k])}!={list(expected[k])}" for k in wrong[:4])
            )
        raise WeightsError(
            f"{path} does not match DeePSiM-{variant}: {'; '.join(problems)}; "
            f"expected {_describe(expected)}; get {WHERE_TO_GET}"
        )
    return state
