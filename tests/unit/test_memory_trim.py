"""MemoryTrimMiddleware: one malloc_trim when the last request in flight ends, at most once per interval."""

from __future__ import annotations

import asyncio

from gateway.observability.memory import MemoryTrimMiddleware
from greenlist.clock import ManualClock


def test_trims_once_idle_and_at_most_once_per_interval():
    calls = []

    async def app(scope, receive, send):
        return None

    clock = ManualClock()
    middleware = MemoryTrimMiddleware(app, min_interval_s=2.0, clock=clock)
    middleware._trim = calls.append  # the real one is libc's malloc_trim
    http = {"type": "http"}

    async def run():
        await middleware(http, None, None)
        await middleware(http, None, None)  # within the interval: no second trim
        clock.advance(2.5)
        await middleware(http, None, None)
        await middleware({"type": "lifespan"}, None, None)  # not an HTTP request: never trims

    asyncio.run(run())
    assert calls == [0, 0] and middleware.trims == 2 and middleware.in_flight == 0


def test_libc_trim_found_on_glibc():
    assert MemoryTrimMiddleware(lambda *a: None)._trim is not None
