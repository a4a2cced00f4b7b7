"""HTTP client for one judge endpoint: timeouts, error classification, circuit breaker, concurrency limit.

Every failure becomes a :class:`JudgeError` with a ``kind`` (the metrics label) and a reason; nothing here
returns a default verdict. Consecutive failures open a :class:`greenlist.breaker.CircuitBreaker`, after
which calls fail at once (``circuit_open``) until its reset time passes and one trial call succeeds.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from greenlist.breaker import CircuitBreaker, CircuitOpenError
from greenlist.clock import SYSTEM_CLOCK, Clock
from guardrails.llm_judge.formats import JudgeRequest, MalformedAnswer

T = TypeVar("T")

ERROR_KINDS = (
    "timeout",
    "connection",
    "http_5xx",
    "rate_limited",
    "http_4xx",
    "malformed",
    "circuit_open",
    "overloaded",
)
"""Values of :attr:`JudgeError.kind`; ``circuit_open`` and ``overloaded`` are not counted as judge failures."""


class JudgeError(Exception):
    """A judge call that produced no verdict.

    Attributes:
        kind: One of :data:`ERROR_KINDS`.
        reason: Human-readable cause (status code, exception, answer excerpt).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class JudgeClient:
    """Posts :class:`JudgeRequest` bodies to ``base_url`` and parses the answers.

    Args:
        base_url: API root (``http://host:8000/v1``).
        api_key: Bearer token, or ``None`` for no ``Authorization`` header.
        timeout_s: Seconds for one call (connect, write, read and pool each).
        max_concurrency: Calls in flight at once; a caller waits up to ``timeout_s`` for a slot.
        breaker: The circuit breaker guarding this endpoint.
        clock: Time source for latency (a :class:`greenlist.clock.ManualClock` in tests and benchmarks).
        transport: Optional ``httpx`` transport (``httpx.MockTransport`` in benchmarks).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        max_concurrency: int,
        breaker: CircuitBreaker,
        clock: Clock = SYSTEM_CLOCK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.breaker = breaker
        self.clock = clock
        self.slots = threading.BoundedSemaphore(max_concurrency)
        self.calls = 0
        self.errors: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._lock = threading.Lock()

    def call(self, request: JudgeRequest, parse: Callable[[Any], T]) -> tuple[T, float]:
        """Send ``request`` and parse the JSON answer with ``parse``.

        Args:
            request: Path and body.
            parse: Reads the response JSON; raises :class:`MalformedAnswer` for a bad answer.

        Returns:
            ``(parsed answer, latency in milliseconds)``.

        Raises:
            JudgeError: ``overloaded`` (no concurrency slot within ``timeout_s``), ``circuit_open``,
                ``timeout``, ``connection``, ``rate_limited`` (429), ``http_5xx``, ``http_4xx`` or
                ``malformed``. All but the first two count as failures for the breaker.
        """
        if not self.slots.acquire(timeout=self.timeout_s):
            reason = f"no free slot of {self.max_concurrency} within {self.timeout_s} s"
            raise self._error(JudgeError("overloaded", reason))
        try:
            try:
                self.breaker.before()
            except CircuitOpenError as exc:
                raise self._error(JudgeError("circuit_open", str(exc))) from None
            start = self.clock.monotonic()
            try:
                result = parse(self._post(request))
            except JudgeError as exc:
                self.breaker.failure()
                raise self._error(exc) from None
            except MalformedAnswer as exc:
                self.breaker.failure()
                raise self._error(JudgeError("malformed", str(exc))) from None
            except BaseException:
                self.breaker.release_trial()
                raise
            self.breaker.success()
            with self._lock:
                self.calls += 1
            return result, (self.clock.monotonic() - start) * 1000.0
        finally:
            self.slots.release()

    def _post(self, request: JudgeRequest) -> Any:
        try:
            response = self.http.post(request.path, json=request.body)
        except httpx.TimeoutException as exc:
            raise JudgeError("timeout", f"no answer within {self.timeout_s} s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise JudgeError("connection", f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status == 429:
            retry = response.headers.get("retry-after")
            raise JudgeError("rate_limited", "HTTP 429 from judge" + (f" (retry-after {retry})" if retry else ""))
        if status >= 500:
            raise JudgeError("http_5xx", f"HTTP {status} from judge: {response.text[:200]!r}")
        if status >= 400:
            raise JudgeError("http_4xx", f"HTTP {status} from judge: {response.text[:200]!r}")
        try:
            return response.json()
        except ValueError:
            raise MalformedAnswer(f"response is not JSON: {response.text[:200]!r}") from None

    def _error(self, exc: JudgeError) -> JudgeError:
        with self._lock:
            self.errors[exc.kind] += 1
            self.last_error, self.last_error_at = str(exc), self.clock.time()
        return exc

    def health(self) -> dict[str, Any]:
        """Breaker state and call counters: ``{"breaker": {"state", "consecutive_failures"}, "calls",
        "errors": {kind: count}, "last_error", "last_error_at"}`` (``last_error_at``: Unix seconds)."""
        with self._lock:
            return {
                "breaker": {"state": self.breaker.state, "consecutive_failures": self.breaker.failures},
                "calls": self.calls,
                "errors": dict(self.errors),
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()
