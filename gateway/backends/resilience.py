"""Upstream fault handling for the ``openai`` backend: retries with backoff and a circuit breaker.

Retries
    Only before any byte of the answer has been used: a connection that could
    not be opened (connect error or connect timeout, never a read timeout: the
    upstream may be generating) or an upstream answer of 429/500/502/503/504.
    Backoff is exponential with full jitter, capped at 4 s, and honours a
    short ``Retry-After``.

Circuit breaker
    :class:`greenlist.breaker.CircuitBreaker`: ``failures`` consecutive upstream
    failures (unreachable, timed out, 5xx) open the circuit; requests then fail at
    once with 503 ``upstream_circuit_open`` and a ``Retry-After`` for ``reset_s``
    seconds, then one trial request is let through.
"""

from __future__ import annotations

import random

from gateway.errors import APIError
from greenlist.breaker import CircuitBreaker

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def backoff_s(attempt: int, base_s: float, retry_after: str | None = None, cap_s: float = 4.0) -> float:
    """Delay before retry number ``attempt`` (0-based): full-jitter exponential, or a short ``Retry-After``."""
    if retry_after:
        try:
            return min(cap_s, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return random.uniform(0.0, min(cap_s, base_s * (2**attempt)))


class UpstreamBreaker(CircuitBreaker):
    """The upstream model's circuit breaker: while open, requests get 503 ``upstream_circuit_open``."""

    def open_error(self, retry_after_s: int) -> Exception:
        """A 503 ``upstream_circuit_open`` with ``Retry-After``."""
        return APIError(
            503,
            f"upstream is failing ({self.failures} consecutive failures); failing fast for "
            f"{retry_after_s} s more (upstream_breaker_reset_s={self.reset_s:g})",
            type="upstream_error",
            code="upstream_circuit_open",
            headers={"Retry-After": str(retry_after_s)},
        )
