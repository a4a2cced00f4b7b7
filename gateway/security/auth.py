"""API keys, scopes and the authentication middleware.

Keys
    ``greenlist keys create --tenant T --scopes generate,moderate`` prints a
    token ``gl_<key id>_<secret>`` once. The store
    (``$GREENLIST_HOME/api_keys.json``, mode 0600, or ``GREENLIST_API_KEYS_FILE``)
    keeps only the SHA-256 of each token, the tenant, the scopes and whether
    the key is revoked. A presented token is looked up by its key id and its
    hash compared in constant time (:func:`hmac.compare_digest`). The secret
    has 256 bits of entropy, so an unsalted fast hash is adequate (there is
    nothing to brute-force, unlike a password).

Scopes
    ``generate`` (completions), ``moderate`` (moderations, guardrail checks),
    ``verify`` (watermark verification), ``verify:detail`` (per-token
    verification detail and other ``/v1/watermark/*`` routes) and ``admin``
    (everything, including routes this table does not know). See
    :func:`required_scope`.

When auth is on
    ``auth: auto`` (default) turns it on when the server listens beyond
    loopback, or when the key store holds an active key; ``on`` and ``off``
    force it. When it is off every request runs as tenant ``default`` with all
    scopes, and the server logs a loud warning at start.

Request state (the contract with policy routing, audit and metrics)
    Every request that reaches a route has ``request.state.tenant`` (str),
    ``request.state.scopes`` (frozenset of str) and ``request.state.key_id``
    (str, or None when auth is off or the request is anonymous).

Public verification
    With ``verify_public: true`` ``POST /v1/watermark/verify`` needs no key;
    anonymous callers are then rate-limited per client address by a token
    bucket (``verify_public_rate_per_min``, ``verify_public_burst``) and run as
    tenant ``public`` with scope ``verify``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import APIError, render_error
from gateway.security.keys import ALL_SCOPES, KeyStore
from gateway.security.ratelimit import RateLimiter, RateLimitUnavailable, TokenBucket, client_address

log = logging.getLogger("greenlist.auth")

DEFAULT_TENANT = "default"
PUBLIC_TENANT = "public"

# Routes anyone may call, authenticated or not.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/verify", "/v1/watermark/keys"}
)
PUBLIC_PREFIXES = ("/static/docs/",)  # the interactive docs' own assets (gateway.api.openapi)
# (path, exact?, scope): first match wins; anything else needs ``admin``.
ROUTE_SCOPES: tuple[tuple[str, bool, str | None], ...] = (
    ("/v1/chat/completions", True, "generate"),
    ("/v1/completions", True, "generate"),
    ("/v1/responses", False, "generate"),  # POST /v1/responses and GET /v1/responses/{id}
    ("/v1/messages", True, "generate"),
    ("/v1/moderations", True, "moderate"),
    ("/v1/guardrails/check", True, "moderate"),
    ("/v1/watermark/verify", True, "verify"),
    ("/v1/watermark/", False, "verify:detail"),
    ("/v1/models", True, None),  # any valid key
)


def required_scope(path: str) -> str | None:
    """The scope a route needs (``None``: any valid key); unknown routes need ``admin``."""
    for prefix, exact, scope in ROUTE_SCOPES:
        if (path == prefix) if exact else path.startswith(prefix):
            return scope
    return "admin"


def has_scope(scopes: frozenset[str] | set[str], scope: str | None) -> bool:
    """Whether ``scopes`` grant ``scope`` (``admin`` grants everything; ``verify:detail`` implies ``verify``)."""
    if scope is None or "admin" in scopes or scope in scopes:
        return True
    return scope == "verify" and "verify:detail" in scopes


@dataclass
class Principal:
    """Who a request acts as: tenant, scopes and key id (None when anonymous or auth is off)."""

    tenant: str
    scopes: frozenset[str]
    key_id: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is loopback only."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class AuthConfig:
    """What the middleware needs from the settings.

    Attributes:
        mode: ``auto``, ``on`` or ``off``.
        host: Address the server listens on (``auto`` turns auth on beyond loopback).
        store: The key store.
        verify_public: Whether ``/v1/watermark/verify`` accepts anonymous calls.
        bucket: Rate limiter for anonymous verification, per client address (in-process or Redis).
        key_limiter: Rate limiter per API key (``api_key_rate_per_min``), or None for no limit.
        trusted_proxies: Addresses/CIDRs whose ``X-Forwarded-For`` is believed (see
            :func:`gateway.security.ratelimit.client_address`).
    """

    mode: str
    host: str
    store: KeyStore
    verify_public: bool = False
    bucket: RateLimiter = field(default_factory=lambda: TokenBucket(1.0, 20))
    key_limiter: RateLimiter | None = None
    trusted_proxies: list[str] = field(default_factory=list)

    def enabled(self) -> bool:
        """Whether requests need a key right now."""
        if self.mode == "on":
            return True
        if self.mode == "off":
            return False
        return not is_loopback(self.host) or self.store.has_active()

    def reason(self) -> str:
        """Why auth is on or off, for the start-up log."""
        if self.mode != "auto":
            return f"auth={self.mode}"
        if not is_loopback(self.host):
            return f"listening on {self.host} (beyond loopback)"
        return "API keys configured" if self.store.has_active() else "loopback and no API keys configured"


def _client_address(scope: Scope, trusted: list[str]) -> str:
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    forwarded = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"x-forwarded-for"), None)
    return client_address(peer, forwarded, trusted)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


async def _send_error(send: Send, exc: APIError, scope: Scope) -> None:
    error = render_error(scope.get("path", ""), exc.status, exc.message, exc.type, exc.param, exc.code)
    body = json.dumps({**error, **exc.extra}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """ASGI middleware: authenticate, authorise by route, set ``request.state.tenant/scopes/key_id``.

    Errors are OpenAI-shaped: 401 ``invalid_api_key`` / ``missing_api_key``,
    403 ``insufficient_scope``, 429 ``rate_limit_exceeded`` (public verify).

    Args:
        app: The wrapped ASGI app.
        config: The :class:`AuthConfig`.
    """

    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        self.app, self.config = app, config

    def principal(self, scope: Scope) -> Principal:
        """Authenticate and authorise one request.

        Raises:
            APIError: 401, 403 or 429.
        """
        path = scope.get("path", "")
        if not self.config.enabled():
            return Principal(DEFAULT_TENANT, ALL_SCOPES)
        token = _bearer(scope)
        needed = required_scope(path)
        if token is None and (
            path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or scope.get("method") == "OPTIONS"
        ):
            return Principal(PUBLIC_TENANT, frozenset())
        if token is None and self.config.verify_public and path == "/v1/watermark/verify":
            return Principal(PUBLIC_TENANT, frozenset({"verify"}))  # rate-limited by address in limit()
        if not token:
            raise APIError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' (create one with "
                "'greenlist keys create --tenant NAME')",
                type="invalid_request_error",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = self.config.store.authenticate(token)
        if key is None:
            raise APIError(
                401,
                "invalid or revoked API key",
                type="invalid_request_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scopes = frozenset(key.scopes)
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES) and not has_scope(scopes, needed):
            raise APIError(
                403,
                f"this API key lacks the scope {needed!r} needed for {path} (it has {sorted(scopes)})",
                type="permission_error",
                code="insufficient_scope",
            )
        return Principal(key.tenant, scopes, key.key_id)

    async def limit(self, scope: Scope, principal: Principal) -> None:
        """Apply the rate limit of the request: per address for anonymous verification, else per API key.

        Raises:
            APIError: 429 ``rate_limit_exceeded`` with ``Retry-After``; 503 ``rate_limit_unavailable`` when the
                shared store is down and ``rate_limit_on_error`` is ``closed``.
        """
        if principal.key_id is None and principal.tenant == PUBLIC_TENANT and "verify" in principal.scopes:
            limiter, client = self.config.bucket, "addr:" + _client_address(scope, self.config.trusted_proxies)
            setting, hint = "verify_public_rate_per_min", " or send an API key with scope 'verify'"
        elif principal.key_id is not None and self.config.key_limiter is not None:
            limiter, client, setting, hint = (
                self.config.key_limiter,
                "key:" + principal.key_id,
                "api_key_rate_per_min",
                "",
            )
        else:
            return
        try:
            wait = await limiter.acquire(client)
        except RateLimitUnavailable as exc:
            raise APIError(
                503,
                f"{exc}; rate_limit_on_error=closed refuses requests until it is back",
                type="server_error",
                code="rate_limit_unavailable",
                headers={"Retry-After": "1"},
            ) from None
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise APIError(
                429,
                f"rate limit exceeded ({setting}); retry in {retry} s{hint}",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(retry)},
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            principal = self.principal(scope)
            await self.limit(scope, principal)
        except APIError as exc:
            await _send_error(send, exc, scope)
            return
        state = scope.setdefault("state", {})
        state["tenant"], state["scopes"], state["key_id"] = principal.tenant, principal.scopes, principal.key_id
        await self.app(scope, receive, send)


def require_scope(scope: str) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that answers 403 unless the request's key has ``scope``.

    Use it on routes whose needs go beyond :data:`ROUTE_SCOPES`, e.g. a
    ``detail: true`` option that needs ``verify:detail``::

        @app.post("/v1/x", dependencies=[Depends(require_scope("admin"))])
    """

    async def dependency(request: Request) -> None:
        scopes = getattr(request.state, "scopes", ALL_SCOPES)
        if not has_scope(scopes, scope):
            raise APIError(
                403, f"this API key lacks the scope {scope!r}", type="permission_error", code="insufficient_scope"
            )

    return dependency


def request_has_scope(request: Request, scope: str) -> bool:
    """Whether the request's key grants ``scope`` (True when auth is off)."""
    return has_scope(getattr(request.state, "scopes", ALL_SCOPES), scope)


def warn_if_open(config: AuthConfig) -> None:
    """Log the loud start-up warning when authentication is off."""
    if config.enabled():
        log.info("authentication on (%s); key store %s", config.reason(), config.store.path)
        return
    bar = "!" * 78
    log.warning(
        "\n%s\n!! AUTHENTICATION IS OFF (%s).\n!! Anyone who can reach this port can generate, moderate "
        "and administer.\n!! Create a key with 'greenlist keys create --tenant NAME --scopes ...' or set "
        "GREENLIST_AUTH=on.\n%s",
        bar,
        config.reason(),
        bar,
    )
