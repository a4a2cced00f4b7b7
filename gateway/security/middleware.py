"""Wires authentication, limits and the generation queue into the FastAPI app (one call from ``create_app``).

See :mod:`gateway.security.auth`, :mod:`gateway.security.limits` and
:mod:`gateway.backends.resilience`; ``docs/reliability.md`` has the design
and the measured fuzzing and load results.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.security.auth import AuthConfig, AuthMiddleware, warn_if_open
from gateway.security.keys import KeyStore, default_keys_path
from gateway.security.limits import BodySizeLimitMiddleware, limiter_for
from gateway.security.ratelimit import RateLimiter, RedisRateLimiter, TokenBucket, redis_client
from gateway.settings import Settings


def _limiter(settings: Settings, redis: object | None, name: str, per_min: float, burst: int) -> RateLimiter:
    """A Redis-shared limiter when ``redis_url`` is set, else an in-process token bucket."""
    if redis is not None:
        return RedisRateLimiter(redis, name, per_min / 60.0, burst, settings.rate_limit_on_error)
    return TokenBucket(per_min / 60.0, burst)


def auth_config(settings: Settings) -> AuthConfig:
    """The :class:`AuthConfig` described by ``settings`` (limits in Redis when ``redis_url`` is set)."""
    store = KeyStore(settings.api_keys_file or default_keys_path(settings.home))
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    bucket = _limiter(settings, redis, "verify", settings.verify_public_rate_per_min, settings.verify_public_burst)
    key_limiter = None
    if settings.api_key_rate_per_min is not None:
        key_limiter = _limiter(settings, redis, "apikey", settings.api_key_rate_per_min, settings.api_key_burst)
    return AuthConfig(
        settings.auth, settings.host, store, settings.verify_public, bucket, key_limiter, settings.trusted_proxy_list
    )


def install_reliability(app: FastAPI, settings: Settings) -> None:
    """Add the auth and body-size middlewares and the generation limiter to ``app``.

    Sets ``app.state.auth`` (:class:`AuthConfig`) and ``app.state.limiter``
    (:class:`GenerationLimiter`), and logs the loud warning when auth is off.
    Auth is the outermost layer, so an unauthenticated request is refused
    before its body is read.
    """
    config = auth_config(settings)
    app.state.auth = config
    app.state.limiter = limiter_for(
        settings.backend,
        settings.max_concurrent_generations,
        settings.max_concurrent_upstream,
        settings.generation_queue_size,
        settings.generation_queue_timeout_s,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(AuthMiddleware, config=config)
    warn_if_open(config)
