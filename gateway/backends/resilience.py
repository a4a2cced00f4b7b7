"""Upstream fault handling for the ``openai`` backend: retries with backoff and a circuit breaker.

Retries
    Only before any byte of the answer has been used: a connection that could
    not be opened (connect error or connect timeout, never a read timeout: the
    upstream may be generating) or an upstream answer of 429/500/502/503/504.
    Backoff is exponential with full jitter, capped at 4 s, and honours a
    short ``Retry-After``.

Circuit breaker
    ``failures`` consecutive upstream failures (unreachable, timed out, 5xx)
    open the circuit: requests then fail at once with 503
    ``upstream_circuit_open`` and a ``Retry-After`` for ``reset_s`` seconds.
    After that one trial request is let through (half-open); its success
    closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import math
import random
import threading
import time

from gateway.errors import APIError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def backoff_s(attempt: int, base_s: float, retry_after: str | None = None, cap_s: float = 4.0) -> float:
    """Delay before retry number ``attempt`` (0-based): full-jitter exponential, or a short ``Retry-After``."""
    if retry_after:
        try:
            return min(cap_s, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return random.uniform(0.0, min(cap_s, base_s * (2 ** attempt)))


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half-open after ``reset_s`` -> closed.

    Args:
        failures: Consecutive failures that open the circuit.
        reset_s: Seconds the circuit stays open before a trial request.
    """

    def __init__(self, failures: int = 5, reset_s: float = 15.0) -> None:
        self.threshold, self.reset_s = failures, reset_s
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.reset_s else "open"

    def fail_fast(self) -> None:
        """Raise the 503 at once while the circuit is open (no trial is started); for callers about to do work.

        Raises:
            APIError: 503 ``upstream_circuit_open``.
        """
        if self.state == "open":
            self._raise_open(self.reset_s - (time.monotonic() - (self.opened_at or 0.0)))

    def _raise_open(self, remaining: float) -> None:
        retry = max(1, math.ceil(remaining))
        raise APIError(503, f"upstream is failing ({self.failures} consecutive failures); failing fast for "
                       f"{retry} s more (upstream_breaker_reset_s={self.reset_s:g})", type="upstream_error",
                       code="upstream_circuit_open", headers={"Retry-After": str(retry)})

    def before(self) -> None:
        """Call before each upstream request.

        Raises:
            APIError: 503 ``upstream_circuit_open`` while the circuit is open
                (or a trial request is already in flight).
        """
        with self._lock:
            if self.opened_at is None:
                return
            remaining = self.reset_s - (time.monotonic() - self.opened_at)
            if remaining <= 0 and not self.trial:
                self.trial = True  # half-open: this request is the trial
                return
        self._raise_open(remaining)

    def success(self) -> None:
        """Record an upstream success: close the circuit."""
        with self._lock:
            self.failures, self.opened_at, self.trial = 0, None, False

    def failure(self) -> None:
        """Record an upstream failure: open the circuit at the threshold, or again after a failed trial."""
        with self._lock:
            self.failures += 1
            if self.trial or self.failures >= self.threshold:
                self.opened_at, self.trial = time.monotonic(), False

    def release_trial(self) -> None:
        """A trial request ended without a verdict on the upstream (e.g. the client left): allow another."""
        with self._lock:
            self.trial = False
