"""The OpenAPI schema as the gateway really answers, and interactive docs that work offline.

* :func:`truthful_openapi`: every operation documents the errors it can give in OpenAI's shape
  (``{"error": {"message", "type", "param", "code"}}``): 400 (validation is answered with 400, never 422),
  401/403 (auth), 404, 413 (body size), 429 (rate limit, generation queue), 500, and for generating endpoints
  502/503/504 (upstream); streamed endpoints document ``text/event-stream`` beside JSON. ``/v1/messages``
  documents Anthropic's error shape (``{"type": "error", "error": {"type", "message"}}``), which it answers with.
* :func:`install_docs`: ``/docs`` (Swagger UI 5) and ``/redoc`` load their assets from the gateway itself
  (the files the PyPI package ``fastapi-offline`` ships), so they work without internet.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from gateway.errors import ANTHROPIC_PATH

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ANTHROPIC_ERROR_SCHEMA = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
_COMMON = {
    "400": "Invalid request (the field is named in error.param)",
    "401": "Missing or unknown API key",
    "403": "The API key lacks the scope",
    "404": "Not found",
    "413": "Request body too large",
    "429": "Rate limited or generation queue full",
    "500": "Internal error (logged)",
}
_UPSTREAM = {"502": "Upstream failed", "503": "Upstream circuit open or draining", "504": "Upstream timed out"}
STREAMED = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"}


def _document(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    errors = dict(_COMMON)
    if method == "post" and path in STREAMED:
        errors.update(_UPSTREAM)
        ok = responses.setdefault("200", {"description": "Successful Response"})
        ok.setdefault("content", {"application/json": {"schema": {}}})["text/event-stream"] = {
            "schema": {"type": "string", "description": "server-sent events (stream: true)"}
        }
    shape = "AnthropicError" if path.startswith(ANTHROPIC_PATH) else "Error"
    for status, description in errors.items():
        responses.setdefault(
            status,
            {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}},
            },
        )


def truthful_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI schema with every real response documented (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    schema["components"]["schemas"]["AnthropicError"] = ANTHROPIC_ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            _document(path, method, operation)
    app.openapi_schema = schema
    return schema


def _assets() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").exists() else None


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` with assets from ``/static/docs`` (no CDN); OpenAPI from :func:`truthful_openapi`.

    Without the ``fastapi-offline`` package the pages fall back to FastAPI's CDN assets.
    """
    app.openapi = lambda: truthful_openapi(app)  # type: ignore[method-assign]
    assets = _assets()
    base = "/static/docs" if assets else None
    if assets:
        app.mount(base, StaticFiles(directory=assets), name="docs-assets")  # type: ignore[arg-type]

    page: dict[str, Any] = {"openapi_url": "/openapi.json", "title": f"{app.title} - API docs"}
    # the gateway's own copies of the assets when fastapi-offline is installed, else FastAPI's CDN defaults
    swagger: dict[str, Any] = {}
    redoc: dict[str, Any] = {}
    if base is not None:
        icon = f"{base}/favicon.png"
        swagger = {"swagger_js_url": f"{base}/swagger-ui-bundle.js", "swagger_css_url": f"{base}/swagger-ui.css"}
        swagger["swagger_favicon_url"] = icon
        redoc = {"redoc_js_url": f"{base}/redoc.standalone.js", "redoc_favicon_url": icon, "with_google_fonts": False}

    @app.get("/docs", include_in_schema=False)
    async def swagger_page() -> HTMLResponse:
        return get_swagger_ui_html(**page, **swagger)

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return get_redoc_html(**page, **redoc)
