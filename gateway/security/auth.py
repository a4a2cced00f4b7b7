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

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import APIError, error_body

log = logging.getLogger("greenlist.auth")

SCOPES: tuple[str, ...] = ("generate", "moderate", "verify", "verify:detail", "admin")
ALL_SCOPES: frozenset[str] = frozenset(SCOPES)
TOKEN_PREFIX = "gl_"
DEFAULT_TENANT = "default"
PUBLIC_TENANT = "public"

# Routes anyone may call, authenticated or not.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/verify", "/v1/watermark/keys"})
# (path, exact?, scope): first match wins; anything else needs ``admin``.
ROUTE_SCOPES: tuple[tuple[str, bool, str | None], ...] = (
    ("/v1/chat/completions", True, "generate"),
    ("/v1/completions", True, "generate"),
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


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (what the store keeps)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ApiKey:
    """One stored key (never the token itself).

    Attributes:
        key_id: Public id, also embedded in the token.
        tenant: Tenant the key acts for.
        scopes: Granted scopes.
        sha256: Hex SHA-256 of the whole token.
        created: Unix time of creation.
        revoked: Unix time of revocation, or None while active.
        name: Optional label.
    """

    key_id: str
    tenant: str
    scopes: list[str]
    sha256: str
    created: float
    revoked: float | None = None
    name: str | None = None

    @property
    def active(self) -> bool:
        """True until revoked."""
        return self.revoked is None


@dataclass
class Principal:
    """Who a request acts as: tenant, scopes and key id (None when anonymous or auth is off)."""

    tenant: str
    scopes: frozenset[str]
    key_id: str | None = None


class KeyStore:
    """API keys in a JSON file (hashed), re-read when the file changes.

    Args:
        path: The JSON file (created on the first :meth:`create`, mode 0600).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    # --- persistence -----------------------------------------------------------
    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text("utf-8") or "{}")
            keys = {k["key_id"]: ApiKey(**k) for k in data.get("keys", [])}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            # A broken store must not open the gate: keep the last good keys, say so.
            log.error("cannot read API key store %s: %s; keeping %d previously loaded keys", self.path, exc,
                      len(self._keys))
            return
        self._keys, self._stamp = keys, stamp

    def refresh(self, max_age_s: float = 1.0) -> None:
        """Re-read the file if it changed, at most every ``max_age_s`` seconds."""
        now = time.monotonic()
        if now - self._checked < max_age_s:
            return
        with self._lock:
            self._checked = now
            self._load()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"keys": [asdict(k) for k in self._keys.values()]}, f, indent=2)
        os.replace(tmp, self.path)
        self._stamp = None

    # --- operations ------------------------------------------------------------
    def keys(self) -> list[ApiKey]:
        """All keys, active and revoked, oldest first."""
        with self._lock:
            self._load()
            return sorted(self._keys.values(), key=lambda k: k.created)

    def has_active(self) -> bool:
        """Whether any key is active (then auth turns on, even on loopback)."""
        self.refresh()
        return any(k.active for k in self._keys.values())

    def create(self, tenant: str, scopes: list[str] | tuple[str, ...], name: str | None = None) -> tuple[str, ApiKey]:
        """Create a key; return ``(token, key)``. The token is shown once and never stored.

        Raises:
            ValueError: for an empty tenant or an unknown scope.
        """
        tenant = tenant.strip()
        if not tenant:
            raise ValueError("tenant must not be empty")
        unknown = sorted(set(scopes) - ALL_SCOPES)
        if unknown or not scopes:
            raise ValueError(f"unknown or missing scopes {unknown}; choose from {list(SCOPES)}")
        with self._lock:
            self._load()
            key_id = secrets.token_hex(6)
            token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            key = ApiKey(key_id=key_id, tenant=tenant, scopes=sorted(set(scopes)), sha256=hash_token(token),
                         created=time.time(), name=name)
            self._keys[key_id] = key
            self._save()
        return token, key

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (it stays listed, marked revoked).

        Raises:
            KeyError: when no key has that id.
        """
        with self._lock:
            self._load()
            key = self._keys[key_id]
            if key.revoked is None:
                key.revoked = time.time()
                self._save()
            return key

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key matching ``token``, or None (constant-time hash comparison)."""
        self.refresh()
        key_id = token[len(TOKEN_PREFIX):].split("_", 1)[0] if token.startswith(TOKEN_PREFIX) else ""
        key = self._keys.get(key_id)
        # Compare even when the id is unknown so timing does not reveal which ids exist.
        expected = key.sha256 if key is not None else "0" * 64
        ok = hmac.compare_digest(expected, hash_token(token))
        return key if ok and key is not None and key.active else None


def default_keys_path(home: Path) -> Path:
    """``$GREENLIST_HOME/api_keys.json``."""
    return Path(home) / "api_keys.json"


class TokenBucket:
    """Per-client token buckets: ``rate_per_s`` refill, ``burst`` capacity, bounded memory.

    Args:
        rate_per_s: Tokens added per second.
        burst: Bucket capacity (requests allowed at once).
        max_clients: Clients remembered (least recently seen are forgotten).
    """

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate_per_s, max(1, burst), max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Take one token for ``client``; return 0 when allowed, else seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate if self.rate > 0 else math.inf
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


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
        bucket: Rate limiter for anonymous verification.
    """

    mode: str
    host: str
    store: KeyStore
    verify_public: bool = False
    bucket: TokenBucket = field(default_factory=lambda: TokenBucket(1.0, 20))

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


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


async def _send_error(send: Send, exc: APIError) -> None:
    body = json.dumps({**error_body(exc.message, exc.type, exc.param, exc.code), **exc.extra}).encode()
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
        if token is None and (path in PUBLIC_PATHS or scope.get("method") == "OPTIONS"):
            return Principal(PUBLIC_TENANT, frozenset())
        if token is None and self.config.verify_public and path == "/v1/watermark/verify":
            wait = self.config.bucket.take(_client_address(scope))
            if wait > 0:
                retry = max(1, math.ceil(wait))
                raise APIError(429, f"rate limit for anonymous verification exceeded (verify_public_rate_per_min); "
                               f"retry in {retry} s or send an API key with scope 'verify'",
                               type="rate_limit_error", code="rate_limit_exceeded",
                               headers={"Retry-After": str(retry)})
            return Principal(PUBLIC_TENANT, frozenset({"verify"}))
        if not token:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>' (create one with "
                           "'greenlist keys create --tenant NAME')", type="invalid_request_error",
                           code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
        key = self.config.store.authenticate(token)
        if key is None:
            raise APIError(401, "invalid or revoked API key", type="invalid_request_error", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        scopes = frozenset(key.scopes)
        if path not in PUBLIC_PATHS and not has_scope(scopes, needed):
            raise APIError(403, f"this API key lacks the scope {needed!r} needed for {path} "
                           f"(it has {sorted(scopes)})", type="permission_error", code="insufficient_scope")
        return Principal(key.tenant, scopes, key.key_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            principal = self.principal(scope)
        except APIError as exc:
            await _send_error(send, exc)
            return
        state = scope.setdefault("state", {})
        state["tenant"], state["scopes"], state["key_id"] = principal.tenant, principal.scopes, principal.key_id
        await self.app(scope, receive, send)


def require_scope(scope: str):
    """A FastAPI dependency that answers 403 unless the request's key has ``scope``.

    Use it on routes whose needs go beyond :data:`ROUTE_SCOPES`, e.g. a
    ``detail: true`` option that needs ``verify:detail``::

        @app.post("/v1/x", dependencies=[Depends(require_scope("admin"))])
    """

    async def dependency(request: Request) -> None:
        scopes = getattr(request.state, "scopes", ALL_SCOPES)
        if not has_scope(scopes, scope):
            raise APIError(403, f"this API key lacks the scope {scope!r}", type="permission_error",
                           code="insufficient_scope")

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
    log.warning("\n%s\n!! AUTHENTICATION IS OFF (%s).\n!! Anyone who can reach this port can generate, moderate "
                "and administer.\n!! Create a key with 'greenlist keys create --tenant NAME --scopes ...' or set "
                "GREENLIST_AUTH=on.\n%s", bar, config.reason(), bar)
