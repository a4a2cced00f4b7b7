"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every error the gateway returns has this shape, including validation errors,
unknown routes and unexpected exceptions (which become a 500 with no detail
leaked; they are bugs and are logged). The exception: paths of the Anthropic Messages API
(:data:`ANTHROPIC_PATH`, ``/v1/messages``) answer in Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}`` (:func:`anthropic_error_body`), so the ``anthropic`` SDK
raises its typed errors (``BadRequestError``, ...) with the body it expects.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("greenlist.errors")


class APIError(Exception):
    """An error to return to the client.

    Args:
        status: HTTP status code.
        message: Human-readable explanation that says what to fix.
        type: OpenAI error type (``invalid_request_error``, ...).
        param: The request field at fault, or None.
        code: Machine-readable code (``content_filter``, ...), or None.
        extra: More top-level fields for the body (e.g. ``greenlist``).
        headers: Extra response headers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.extra = extra or {}
        self.headers = headers or {}


ANTHROPIC_PATH = "/v1/messages"
"""Requests under this path get Anthropic-shaped errors."""

# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors)
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """The Anthropic error object: ``{"type": "error", "error": {"type", "message"}}``, the type by ``status``
    (``invalid_request_error`` for 400, ``authentication_error`` 401, ... ``api_error`` for other 5xx)."""
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}


def render_error(
    path: str, status: int, message: str, type: str, param: str | None, code: str | None
) -> dict[str, Any]:
    """The error body for a request to ``path``: Anthropic's shape under :data:`ANTHROPIC_PATH`, else OpenAI's.

    Anthropic's shape has no ``param``: the message names the field instead (it always does for a 400).
    """
    if path == ANTHROPIC_PATH or path.startswith(ANTHROPIC_PATH + "/"):
        return anthropic_error_body(status, message)
    return error_body(message, type, param, code)


def error_response(exc: APIError, path: str = "") -> JSONResponse:
    """Render an :class:`APIError` as a JSON response (shaped for ``path``, see :func:`render_error`)."""
    body = {**render_error(path, exc.status, exc.message, exc.type, exc.param, exc.code), **exc.extra}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` OpenAI-shaped."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        body = render_error(request.url.path, 400, message, "invalid_request_error", param, "invalid_value")
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(
            render_error(request.url.path, exc.status_code, str(exc.detail), "invalid_request_error", None, code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "internal error; it has been logged"
        body = render_error(request.url.path, 500, message, "server_error", None, "internal_error")
        return JSONResponse(body, status_code=500)
