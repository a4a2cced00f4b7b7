"""Rate limits: per-client token buckets, in this process or shared by every replica in Redis.

Two implementations of one interface (:class:`RateLimiter`, ``await limiter.acquire(client)`` returns 0 when
allowed, else the seconds until a request would be):

* :class:`TokenBucket`: in-process (Rate-limiting by token bucket, Tanenbaum, *Computer Networks*, 5.4.2);
  N replicas allow N times the limit. Used when ``redis_url`` is not set.
* :class:`RedisRateLimiter`: GCRA (the generic cell rate algorithm, equivalent to a token bucket) in one Lua
  script, so the read-modify-write is atomic in Redis and every replica shares one bucket per client. Times
  come from Redis's own ``TIME``, so replica clocks never disagree. When Redis cannot be reached the
  ``on_error`` setting decides: ``open`` allows the request (and logs), ``closed`` refuses it with 503.

Clients are keyed by API key id when a request carries one, else by address (:func:`client_address`), taken
from ``X-Forwarded-For`` only when the peer is a listed trusted proxy.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
from collections import OrderedDict
from typing import Any, Protocol

from gateway.observability.metrics import RATE_LIMIT_ERRORS
from greenlist.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("greenlist.ratelimit")


class RateLimiter(Protocol):
    """A per-client rate limit."""

    async def acquire(self, client: str) -> float:
        """Take one request for ``client``: 0 when allowed, else seconds until one is."""
        ...


class RateLimitUnavailable(RuntimeError):
    """The shared limit store cannot be reached and ``on_error`` is ``closed``."""


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

    async def acquire(self, client: str) -> float:
        """:meth:`take` for the :class:`RateLimiter` interface."""
        return self.take(client)


# KEYS[1]: the client's key. ARGV: emission interval (ms per request), burst. Returns ms to wait (0: allowed).
# The key holds the theoretical arrival time (TAT); it expires once the bucket would be full again.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - emission * burst
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return 0
"""


class RedisRateLimiter:
    """A token bucket per client shared by every replica: GCRA in one atomic Lua script (see module doc).

    Args:
        client: A ``redis.asyncio.Redis`` client (short socket timeouts: a dead Redis must not stall requests).
        name: Key prefix part naming this limit, e.g. ``verify`` or ``apikey``.
        rate_per_s: Requests per second in the long run.
        burst: Requests allowed at once.
        on_error: ``open`` (allow) or ``closed`` (raise :class:`RateLimitUnavailable`) when Redis fails.
    """

    def __init__(self, client: Any, name: str, rate_per_s: float, burst: int, on_error: str = "open") -> None:
        self.client, self.name, self.on_error = client, name, on_error
        self.emission_ms = 1000.0 / rate_per_s
        self.burst = max(1, burst)
        self.script = client.register_script(GCRA_LUA)
        self.errors = 0

    async def acquire(self, client: str) -> float:
        """Take one request for ``client`` in Redis: 0 when allowed, else seconds to wait.

        Raises:
            RateLimitUnavailable: Redis failed and ``on_error`` is ``closed``.
        """
        try:
            wait_ms = await self.script(
                keys=[f"greenlist:rl:{self.name}:{client}"], args=[self.emission_ms, self.burst]
            )
        except Exception as exc:  # noqa: BLE001 - any Redis/network failure: on_error decides, never a 500
            self.errors += 1
            RATE_LIMIT_ERRORS.labels(self.name).inc()
            if self.on_error == "closed":
                raise RateLimitUnavailable(f"rate-limit store unreachable ({type(exc).__name__})") from exc
            log.warning("rate-limit store unreachable (%s); allowing (rate_limit_on_error=open)", exc)
            return 0.0
        return float(wait_ms) / 1000.0


def redis_client(url: str) -> Any:
    """A ``redis.asyncio`` client for ``url`` with 0.5 s connect/read timeouts.

    Raises:
        ImportError: when the ``redis`` package is missing (``pip install redis``).
    """
    import redis.asyncio as aredis

    return aredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def client_address(peer: str, forwarded_for: str | None, trusted: list[str]) -> str:
    """The client's address: the peer, or the right-most ``X-Forwarded-For`` hop that is not a trusted proxy.

    Walks the chain from the right (the hop nearest to us) while each hop is a trusted proxy; the first
    untrusted one is the client. Without a trusted peer the header is ignored (anyone can send it).

    Args:
        peer: The TCP peer address.
        forwarded_for: The ``X-Forwarded-For`` header, or None.
        trusted: Trusted proxy addresses or CIDRs (``trusted_proxies``).

    Examples:
        >>> client_address("10.0.0.2", "203.0.113.7, 10.0.0.3", ["10.0.0.0/24"])
        '203.0.113.7'
        >>> client_address("198.51.100.1", "203.0.113.7", ["10.0.0.0/24"])
        '198.51.100.1'
    """
    nets = []
    for item in trusted:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            log.warning("trusted_proxies: %r is not an address or CIDR; ignored", item)

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in nets)

    if not forwarded_for or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer
