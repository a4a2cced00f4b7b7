"""The clock that code which waits reads time from, so tests advance time instead of sleeping.

Everything that waits or compares ages (the circuit breaker's reset, rate-limit windows, policy-file
polling, corpus and database reload checks) takes a :class:`Clock` and defaults to :data:`SYSTEM_CLOCK`.
Tests pass a :class:`ManualClock` and call :meth:`ManualClock.advance`.

Examples:
    >>> clock = ManualClock()
    >>> start = clock.monotonic()
    >>> clock.advance(15.0)
    >>> clock.monotonic() - start
    15.0
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A source of time: a monotonic clock for intervals and a wall clock for timestamps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals and deadlines)."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch (for timestamps shown to people)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a :class:`ManualClock` returns at once)."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time` and :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        """Seconds from :func:`time.monotonic`."""
        return time.monotonic()

    def time(self) -> float:
        """Seconds from :func:`time.time`."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` with :func:`asyncio.sleep`."""
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to (tests).

    Args:
        start: Initial reading of both clocks, in seconds.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        """The current reading."""
        return self.now

    def time(self) -> float:
        """The current reading, as a Unix time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` and yield to the event loop once."""
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``.

        Raises:
            ValueError: for a negative ``seconds`` (clocks never go back).
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go back; got advance({seconds})")
        self.now += seconds


SYSTEM_CLOCK: Clock = SystemClock()
"""The process-wide real clock, the default everywhere."""
