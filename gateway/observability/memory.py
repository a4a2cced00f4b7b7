"""Giving freed heap memory back to the OS when the gateway goes idle (glibc ``malloc_trim``).

Scoring a request allocates and frees tens of MiB (ONNX Runtime activations, tokeniser buffers, NumPy
temporaries). glibc keeps freed chunks in its arenas, so a gateway's RSS stays at its high-water mark although
the memory is free: measured ~27 MiB of the default policy's idle RSS (docs/benchmarks.md, "Gateway memory").
:class:`MemoryTrimMiddleware` calls ``malloc_trim(0)`` in a worker thread when the last request in flight
finished, at most once per ``min_interval_s``; off glibc (musl, macOS) it does nothing.
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
    """ASGI middleware: ``malloc_trim(0)`` once no HTTP request is in flight (see the module docstring).

    Args:
        app: The wrapped ASGI app.
        min_interval_s: Least seconds between two trims (a trim walks the heap: ~1 ms per 100 MiB).
        clock: Time source (injectable for tests).

    Attributes:
        trims: How many trims ran (for tests and curiosity).
    """

    def __init__(self, app: ASGIApp, min_interval_s: float = 2.0, clock: Clock | None = None) -> None:
        self.app, self.min_interval_s, self.clock = app, min_interval_s, clock or SystemClock()
        self.in_flight, self.trims = 0, 0
        self._last = float("-inf")
        self._trim = _malloc_trim()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._trim is not None:
                now = self.clock.monotonic()
                if now - self._last >= self.min_interval_s:
                    self._last = now
                    self.trims += 1
                    await asyncio.to_thread(self._trim, 0)
