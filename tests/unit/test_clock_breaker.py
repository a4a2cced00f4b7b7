"""The injectable clock and the circuit breaker that reads it (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.backends.resilience import UpstreamBreaker
from gateway.errors import APIError
from greenlist.breaker import CircuitBreaker, CircuitOpenError
from greenlist.clock import ManualClock


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.monotonic() == clock.time() == 100.0
    asyncio.run(clock.sleep(2.5))
    assert clock.monotonic() == 102.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_breaker_opens_after_failures_and_half_opens_after_reset() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failures=3, reset_s=10.0, clock=clock)
    for _ in range(2):
        breaker.before()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as err:
        breaker.before()
    assert err.value.retry_after_s == 10 and err.value.failures == 3
    clock.advance(9.5)
    with pytest.raises(CircuitOpenError) as err:
        breaker.fail_fast()
    assert err.value.retry_after_s == 1
    clock.advance(0.5)
    assert breaker.state == "half-open"
    breaker.before()  # the one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before()  # a second caller while the trial is in flight
    breaker.failure()  # the trial failed: open again for reset_s
    assert breaker.state == "open"
    clock.advance(10.0)
    breaker.before()
    breaker.success()
    assert breaker.state == "closed" and breaker.failures == 0


def test_upstream_breaker_answers_openai_shaped_503() -> None:
    breaker = UpstreamBreaker(failures=1, reset_s=15.0, clock=ManualClock())
    breaker.failure()
    with pytest.raises(APIError) as err:
        breaker.before()
    assert err.value.status == 503 and err.value.code == "upstream_circuit_open"
    assert err.value.headers == {"Retry-After": "15"}


def test_breaker_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failures >= 1"):
        CircuitBreaker(failures=0)
