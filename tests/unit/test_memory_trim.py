"""MemoryTrimMiddleware: one malloc_trim once the gateway stayed idle, however many requests came before."""

from __future__ import annotations

import asyncio

from gateway.observability.memory import MemoryTrimMiddleware
from greenlist.clock import ManualClock


def test_trims_once_idle():
    calls = []

    async def app(scope, receive, send):
        return None

    middleware = MemoryTrimMiddleware(app, delay_s=1.0, clock=ManualClock())
    middleware._trim = calls.append  # the real one is libc's malloc_trim
    http = {"type": "http"}

    async def run():
        await middleware(http, None, None)
        await middleware(http, None, None)  # the trim of the first is still pending: no second task
        await middleware({"type": "lifespan"}, None, None)  # not an HTTP request: never trims
        await middleware._pending

    asyncio.run(run())
    assert calls == [0] and middleware.trims == 1 and middleware.in_flight == 0


def test_libc_trim_found_on_glibc():
    assert MemoryTrimMiddleware(lambda *a: None)._trim is not None
