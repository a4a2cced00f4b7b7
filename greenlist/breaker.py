"""A circuit breaker for calls to a remote service (an upstream model, an LLM judge).

``failures`` consecutive failures open the circuit: calls then fail at once for ``reset_s`` seconds.
After that one trial call is let through (half-open); its success closes the circuit, its failure opens
it again (Nygard, *Release It!*, 2nd ed., ch. 5 "Circuit Breaker").

Time comes from an injectable :class:`greenlist.clock.Clock`, so tests advance it instead of sleeping.

Examples:
    >>> from greenlist.clock import ManualClock
    >>> clock = ManualClock()
    >>> breaker = CircuitBreaker(failures=2, reset_s=10.0, clock=clock)
    >>> breaker.failure(); breaker.failure(); breaker.state
    'open'
    >>> clock.advance(10.0); breaker.state
    'half-open'
"""

from __future__ import annotations

import math
import threading

from greenlist.clock import SYSTEM_CLOCK, Clock


class CircuitOpenError(RuntimeError):
    """Raised instead of calling a service whose circuit is open.

    Attributes:
        retry_after_s: Whole seconds until a trial call will be let through (at least 1).
        failures: Consecutive failures that opened the circuit.
    """

    def __init__(self, message: str, retry_after_s: int, failures: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.failures = failures


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half-open after ``reset_s`` -> closed.

    Thread-safe. Subclasses change the error raised while open by overriding :meth:`open_error`.

    Args:
        failures: Consecutive failures that open the circuit (>= 1).
        reset_s: Seconds the circuit stays open before a trial call (> 0).
        clock: Time source (default: the system clock).

    Raises:
        ValueError: for ``failures < 1`` or ``reset_s <= 0``.
    """

    def __init__(self, failures: int = 5, reset_s: float = 15.0, clock: Clock = SYSTEM_CLOCK) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError(f"need failures >= 1 and reset_s > 0; got failures={failures}, reset_s={reset_s}")
        self.threshold, self.reset_s, self.clock = failures, reset_s, clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock.monotonic() - self.opened_at >= self.reset_s else "open"

    def open_error(self, retry_after_s: int) -> Exception:
        """The exception raised while the circuit is open (override to change its type)."""
        return CircuitOpenError(
            f"failing fast after {self.failures} consecutive failures; next trial in {retry_after_s} s",
            retry_after_s,
            self.failures,
        )

    def _raise_open(self, remaining_s: float) -> None:
        raise self.open_error(max(1, math.ceil(remaining_s)))

    def fail_fast(self) -> None:
        """Raise at once while the circuit is open (no trial is started); for callers about to do work.

        Raises:
            Exception: :meth:`open_error` while open.
        """
        if self.state == "open":
            self._raise_open(self.reset_s - (self.clock.monotonic() - (self.opened_at or 0.0)))

    def before(self) -> None:
        """Call before each call to the service.

        Raises:
            Exception: :meth:`open_error` while the circuit is open (or a trial call is already in flight).
        """
        with self._lock:
            if self.opened_at is None:
                return
            remaining = self.reset_s - (self.clock.monotonic() - self.opened_at)
            if remaining <= 0 and not self.trial:
                self.trial = True  # half-open: this call is the trial
                return
        self._raise_open(remaining)

    def success(self) -> None:
        """Record a success: close the circuit."""
        with self._lock:
            self.failures, self.opened_at, self.trial = 0, None, False

    def failure(self) -> None:
        """Record a failure: open the circuit at the threshold, or again after a failed trial."""
        with self._lock:
            self.failures += 1
            if self.trial or self.failures >= self.threshold:
                self.opened_at, self.trial = self.clock.monotonic(), False

    def release_trial(self) -> None:
        """A trial call ended without a verdict on the service (e.g. the client left): allow another."""
        with self._lock:
            self.trial = False
