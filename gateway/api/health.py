"""``/healthz`` (liveness and readiness) and ``/v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import gateway_of

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness and readiness: the model is loaded and warmed up once this answers."""
    g = gateway_of(request)
    return {
        "status": "ok",
        "policy": {"name": g.pipeline.name, "version": g.pipeline.version},
        "backend": g.settings.backend,
        "models": g.backend.model_ids,
        **g.backend.health(),
        **({"guardrails": health} if (health := g.pipeline.health()) else {}),
    }


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """OpenAI's model list."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "greenlist"}
            for m in gateway_of(request).backend.model_ids
        ],
    }
