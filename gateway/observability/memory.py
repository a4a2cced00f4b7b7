"""Giving freed heap memory back to the OS when the gateway goes idle (glibc ``malloc_trim``).

Scoring a request allocates and frees tens of MiB (ONNX Runtime activations, tokeniser buffers, NumPy
temporaries). glibc keeps freed chunks in its arenas, so a gateway's RSS stays at its high-water mark although
the memory is free: measured ~27 MiB of the default policy's idle RSS (docs/benchmarks.md, "Gateway memory").
:class:`MemoryTrimMiddleware` calls ``malloc_trim(0)`` in a worker thread when the last request in flight
finished and nothing else started within ``delay_s``; off glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from greenlist.clock import Clock, SystemClock


def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


class MemoryTrimMiddleware:
    """ASGI middleware: ``malloc_trim(0)`` once no HTTP request has been in flight for ``delay_s``.

    Args:
        app: The wrapped ASGI app.
        delay_s: Idle seconds before the trim (a busy gateway never trims; a trim walks the heap, ~1 ms per
            100 MiB, in a worker thread).
        clock: Time source (injectable for tests: ``ManualClock.sleep`` returns at once).

    Attributes:
        trims: How many trims ran.
    """

    def __init__(self, app: ASGIApp, delay_s: float = 1.0, clock: Clock | None = None) -> None:
        self.app, self.delay_s, self.clock = app, delay_s, clock or SystemClock()
        self.in_flight, self.trims = 0, 0
        self._generation = 0  # requests seen: a trim waits for the count to stay still over delay_s
        self._pending: asyncio.Task[None] | None = None
        self._trim = _malloc_trim()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        self._generation += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._trim is not None and (self._pending is None or self._pending.done()):
                self._pending = asyncio.create_task(self._trim_when_idle())

    async def _trim_when_idle(self) -> None:
        seen = -1
        while seen != self._generation or self.in_flight:
            seen = self._generation
            await self.clock.sleep(self.delay_s)
        self.trims += 1
        await asyncio.to_thread(self._trim, 0)
