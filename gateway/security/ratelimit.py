"""Rate limits: per-client token buckets (Rate-limiting by token bucket, Tanenbaum, *Computer Networks*, 5.4.2)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

from greenlist.clock import SYSTEM_CLOCK, Clock


class TokenBucket:
    """Per-client token buckets: ``rate_per_s`` refill, ``burst`` capacity, bounded memory.

    Args:
        rate_per_s: Tokens added per second.
        burst: Bucket capacity (requests allowed at once).
        max_clients: Clients remembered (least recently seen are forgotten).
        clock: Time source (tests pass a :class:`greenlist.clock.ManualClock`).
    """

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 10_000, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate, self.burst, self.max_clients, self.clock = rate_per_s, max(1, burst), max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Take one token for ``client``; return 0 when allowed, else seconds until one is available."""
        now = self.clock.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate if self.rate > 0 else math.inf
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait
