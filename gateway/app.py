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
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from gateway import trust
from gateway.admin import router as admin_router
from gateway.auth import request_has_scope
from gateway.completions import DECISION_HEADER, complete
from gateway.metrics import WATERMARK_VERIFICATIONS, MetricsMiddleware
from gateway.errors import APIError, install_error_handlers
from gateway.limits import check_moderation_inputs, check_text_length
from gateway.reliability import install_reliability
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
        watcher = trust.start_watcher(app.state.gateway)  # policy hot reload
        yield
        await trust.shutdown(app.state.gateway, watcher)  # flush the audit log
        if gateway is None:
            await app.state.gateway.aclose()

    app = FastAPI(title="Greenlist", version="0.1.0", lifespan=lifespan,
                  description="Guardrail and watermarking gateway for LLMs (OpenAI-compatible).")
    install_error_handlers(app)
    install_reliability(app, settings)  # auth, body-size limit, generation queue
    app.add_middleware(MetricsMiddleware)  # outermost: counts every response, 401s included
    app.include_router(admin_router)  # /metrics, /admin/policies[/reload], /admin/audit, /console

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
        return await complete(gw(request), body, limiter=request.app.state.limiter, request=request)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        """OpenAI text completions, guarded and watermarked."""
        return await complete(gw(request), body, limiter=request.app.state.limiter, request=request)

    @app.post("/v1/moderations")
    async def moderations(body: ModerationRequest, request: Request) -> dict[str, Any]:
        """OpenAI moderations, computed by Greenlist's toxicity guardrail."""
        check_moderation_inputs(body.input, settings.max_moderation_inputs)
        check_text_length(body.input, settings.max_text_chars, "input")
        guardrail = _toxicity(gw(request))
        started = time.perf_counter()
        results = await asyncio.to_thread(guardrail.moderate, body.input)
        trust.audit_moderation(gw(request), trust.request_context(request), body.input, results,
                               (time.perf_counter() - started) * 1000.0)
        return {"id": f"modr-{time.time_ns():x}", "model": body.model or "greenlist-toxicity", "results": results}

    @app.post("/v1/watermark/verify")
    async def verify(body: VerifyRequest, request: Request) -> dict[str, Any]:
        """Is this text watermarked by this gateway? z-test (and optionally WinMax) over the text's tokens."""
        check_text_length(body.text, settings.max_text_chars, "text")
        if body.detail and not request_has_scope(request, "verify:detail"):
            raise APIError(403, "per-token detail needs an API key with the verify:detail scope",
                           type="permission_error", param="detail", code="insufficient_scope")
        result = await asyncio.to_thread(gw(request).verifier.verify, body.text, windowed=body.windowed,
                                         detail=body.detail, certificate=body.certificate)
        WATERMARK_VERIFICATIONS.labels(result["verdict"]).inc()
        return result

    @app.get("/v1/watermark/keys")
    async def watermark_keys(request: Request) -> dict[str, Any]:
        """Public keys that verify certificates, and the ids of the watermark keys (never their secrets)."""
        v = gw(request).verifier
        return {"signing_keys": [v.signer.public()] if v.signer else [],
                "watermark_keys": [k.public() for k in v.keyring.keys],
                "active_watermark_key": v.keyring.active.key_id}

    @app.get("/verify", response_class=HTMLResponse, include_in_schema=False)
    async def verify_page() -> HTMLResponse:
        """The verification page: paste a text, see the verdict, coloured tokens and the certificate."""
        return HTMLResponse(files("gateway").joinpath("static/verify.html").read_text("utf-8"))

    @app.post("/v1/guardrails/check")
    async def guardrails_check(body: CheckRequest, request: Request) -> JSONResponse:
        """Run a policy's guardrails on a text without generating."""
        check_text_length(body.text, settings.max_text_chars, "text")
        g = gw(request)
        ctx = trust.request_context(request)
        resolution = trust.resolve(g, ctx, body.policy)
        pipeline = resolution.pipeline
        verdict = await pipeline.check(body.text, Direction(body.direction))
        trust.after_check(g, ctx, pipeline, verdict, body.text, resolution.shadow)  # audit, metrics, shadow
        content = {"policy": {"name": pipeline.name, "version": pipeline.version}, "direction": body.direction,
                   "text": verdict.text, **verdict.to_dict(), "request_id": ctx.request_id}
        return JSONResponse(content, headers={DECISION_HEADER: verdict.decision.value,
                                              trust.REQUEST_ID_HEADER: ctx.request_id})

    return app


@functools.cache
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
