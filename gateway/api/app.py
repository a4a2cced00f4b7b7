"""The FastAPI application factory: middleware, error handlers and one router per endpoint group.

=======================  =============================================================
router module            endpoints
=======================  =============================================================
:mod:`.completions`      ``/v1/chat/completions``, ``/v1/completions``
:mod:`.responses`        ``/v1/responses``, ``/v1/responses/{id}``
:mod:`.messages`         ``/v1/messages`` (Anthropic shape)
:mod:`.moderations`      ``/v1/moderations``
:mod:`.watermark`        ``/v1/watermark/verify``, ``/v1/watermark/keys``, ``/verify``
:mod:`.guardrails`       ``/v1/guardrails/check``
:mod:`.health`           ``/healthz``, ``/v1/models``
:mod:`.admin`            ``/metrics``, ``/admin/*``, ``/console``
=======================  =============================================================

Routes are thin: they validate the body and hand over to :mod:`gateway.serving` (the request
pipeline) or to the :class:`~gateway.state.Gateway`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.api import admin, completions, guardrails, health, messages, moderations, responses, watermark
from gateway.api.openapi import install_docs
from gateway.errors import install_error_handlers
from gateway.observability.memory import MemoryTrimMiddleware
from gateway.observability.metrics import MetricsMiddleware
from gateway.security.middleware import install_reliability
from gateway.settings import Settings
from gateway.state import Gateway


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    """Build the app; the gateway (models, policy, keys) loads at startup unless given.

    Args:
        settings: Server settings (default: from environment and config file).
        gateway: An already started gateway (tests share one between apps).

    Returns:
        The FastAPI app, with ``app.state.settings`` set; ``app.state.gateway`` is set at startup.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw = gateway if gateway is not None else await asyncio.to_thread(Gateway.start, settings)
        app.state.gateway = gw
        watcher = gw.start_watcher()  # policy hot reload
        yield
        await gw.drain(watcher)  # stop the watcher, finish shadow checks, flush the audit log
        if gateway is None:
            await gw.aclose()

    app = FastAPI(
        title="Greenlist",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Guardrail and watermarking gateway for LLMs (OpenAI-compatible).",
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_reliability(app, settings)  # auth, body-size limit, generation queue
    app.add_middleware(MemoryTrimMiddleware)  # freed heap back to the OS when idle (idle RSS)
    app.add_middleware(MetricsMiddleware)  # outermost: counts every response, 401s included
    for module in (health, completions, responses, messages, moderations, watermark, guardrails, admin):
        app.include_router(module.router)
    install_docs(app)  # /docs and /redoc with local assets; the OpenAPI schema documents every real response
    return app
