"""The server itself: whether it answers, and what a new session can be made of."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from server.engine.generators import available_generators, default_generator
from server.engine.optimizers import DEFAULT_OPTIMIZER, OPTIMIZERS, preset_population
from server.http.deps import Manager
from server.http.schemas import Health, Options
from server.sessions.config import SessionConfig

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/health", response_model=Health)
async def health(manager: Manager) -> dict[str, Any]:
    """For monitoring and ``xdream health``: answers as long as the event loop runs."""
    return {"status": "ok", "sessions": len(manager.sessions), "device": manager.device}


@router.get("/options", response_model=Options)
async def options() -> dict[str, Any]:
    """Generators (and whether each can be built now), optimizers and defaults, for forms."""
    return await asyncio.to_thread(_options)  # checks weights files on disk


def _options() -> dict[str, Any]:
    """What the new-session form offers: generators (and whether their weights are
    installed), optimizers with what each is, and the defaults of every setting."""
    default = default_generator()
    generators = available_generators()
    return {
        "generators": [
            {"name": name, "available": ok, "default": name == default}
            for name, ok in generators.items()
        ],
        "optimizers": [
            {
                "name": name,
                "description": (OPTIMIZERS.get(name).__doc__ or "").strip().splitlines()[0],
                "default": name == DEFAULT_OPTIMIZER,
                # Images per generation with each generator, for the form's time estimate.
                "population": {
                    generator: preset_population(name, generator) for generator in generators
                },
            }
            for name in OPTIMIZERS.names()
        ],
        "defaults": SessionConfig().model_dump(mode="json"),
    }
