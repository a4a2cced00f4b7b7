"""The FastAPI application: OpenAI-compatible routes plus Greenlist's own.

Routes are thin: they validate the body and hand over to
:mod:`gateway.completions` (the request pipeline) or to :class:`gateway.service.Gateway`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.completions import DECISION_HEADER, complete
from gateway.errors import APIError, install_error_handlers
from gateway.schemas import ChatCompletionRequest, CheckRequest, CompletionRequest, ModerationRequest, VerifyRequest
from gateway.service import Gateway
from gateway.settings import Settings
from guardrails import Direction


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    """Build the app; the gateway (models, policy, keys) loads at startup unless given.

    Args:
        settings: Server settings (default: from environment and config file).
        gateway: An already started gateway (tests share one between apps).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = gateway or await asyncio.to_thread(Gateway.start, settings)
        yield
        if gateway is None:
            await app.state.gateway.aclose()

    app = FastAPI(title="Greenlist", version="0.1.0", lifespan=lifespan,
                  description="Guardrail and watermarking gateway for LLMs (OpenAI-compatible).")
    install_error_handlers(app)

    def gw(request: Request) -> Gateway:
        return request.app.state.gateway

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness and readiness: the model is loaded and warmed up once this answers."""
        g = gw(request)
        return {"status": "ok", "policy": {"name": g.pipeline.name, "version": g.pipeline.version},
                "backend": g.settings.backend, "models": g.backend.model_ids}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        """OpenAI's model list."""
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "greenlist"} for m in gw(request).backend.model_ids]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """OpenAI chat completions, guarded and watermarked."""
        return await complete(gw(request), body)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        """OpenAI text completions, guarded and watermarked."""
        return await complete(gw(request), body)

    @app.post("/v1/moderations")
    async def moderations(body: ModerationRequest, request: Request) -> dict[str, Any]:
        """OpenAI moderations, computed by Greenlist's toxicity guardrail."""
        guardrail = _toxicity(gw(request))
        results = await asyncio.to_thread(guardrail.moderate, body.input)
        return {"id": f"modr-{time.time_ns():x}", "model": body.model or "greenlist-toxicity", "results": results}

    @app.post("/v1/watermark/verify")
    async def verify(body: VerifyRequest, request: Request) -> dict[str, Any]:
        """Is this text watermarked by this gateway? z-test over the text's tokens."""
        return await asyncio.to_thread(gw(request).verify, body.text)

    @app.post("/v1/guardrails/check")
    async def guardrails_check(body: CheckRequest, request: Request) -> JSONResponse:
        """Run a policy's guardrails on a text without generating."""
        g = gw(request)
        pipeline = g.resolve_policy(body.policy)
        verdict = await pipeline.check(body.text, Direction(body.direction))
        content = {"policy": {"name": pipeline.name, "version": pipeline.version}, "direction": body.direction,
                   "text": verdict.text, **verdict.to_dict()}
        return JSONResponse(content, headers={DECISION_HEADER: verdict.decision.value})

    return app


@functools.lru_cache(maxsize=8)
def _default_toxicity() -> Any:
    from guardrails.toxicity import ToxicityGuardrail

    return ToxicityGuardrail(ToxicityGuardrail.Config())


def _toxicity(g: Gateway) -> Any:
    guardrail = g.pipeline.find("toxicity")
    if guardrail is not None and hasattr(guardrail, "moderate"):
        return guardrail
    try:
        return _default_toxicity()
    except Exception as exc:  # noqa: BLE001
        raise APIError(503, f"moderation model unavailable: {exc}", type="server_error", code="model_unavailable") from None
