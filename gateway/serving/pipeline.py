"""Running a policy's guardrails on one text: the decision the gateway acts on.

:class:`Pipeline` is a compiled policy: its guardrails are constructed once
(models loaded) and then :meth:`Pipeline.check` runs them, in policy order, on a
prompt or an output:

1. each guardrail scans the current text, within its ``timeout_s``, one after
   the other in one worker thread (:class:`_Chain`);
2. a guardrail that raises or times out gets its entry's ``on_error`` decision
   and the result records the error;
3. a ``redact``-level result hands its rewritten text to the next guardrail;
4. the verdict is the most severe decision of all results.

Lexical guardrails (a guardrail class with ``deobfuscate = True``) also scan the de-obfuscated text
(:func:`greenlist.normalize.deobfuscate`: "i d i o t", "1d10t") when it differs,
and the more severe of the two results counts (``details.deobfuscated``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from gateway.policy.schema import LoadedPolicy
from greenlist.normalize import deobfuscate, normalize
from guardrails import (
    Decision,
    Direction,
    Guardrail,
    GuardrailResult,
    Moderator,
    ScanContext,
    guardrail_class,
    most_severe,
)


@dataclass
class Verdict:
    """The outcome of checking one text in one direction.

    Attributes:
        direction: ``input`` or ``output``.
        decision: Most severe decision over all guardrails.
        text: The text after redactions (the input text when none applied).
        results: One result per guardrail that ran, in policy order.
        scope: What was checked, e.g. ``{"kind": "full", "chars": 812}`` or a
            streaming window ``{"kind": "window", "start": 0, "end": 240}``.
        items: Per-item records when several texts were checked as one (``{"messages": [...]}``,
            ``{"tool_calls": [...]}``; see :mod:`gateway.serving.conversation`).
    """

    direction: Direction
    decision: Decision
    text: str
    results: list[GuardrailResult] = field(default_factory=list)
    scope: dict[str, Any] = field(default_factory=dict)

    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in the ``greenlist`` object (with ``messages`` / ``tool_calls`` when checked per item)."""
        return {
            "decision": self.decision.value,
            "scope": self.scope,
            "guardrails": [r.to_dict() for r in self.results],
            **self.items,
        }


class Pipeline:
    """A compiled policy: constructed guardrails for input and output.

    Args:
        loaded: The validated policy with its version.
        build: Makes a guardrail from its policy entry (default: construct
            it); the policy store passes a cache so policies share instances.

    Raises:
        Exception: whatever a guardrail's constructor raises (a missing model,
            an unreadable index); the gateway refuses to start with it.
    """

    CACHE_SIZE = 4096

    def __init__(self, loaded: LoadedPolicy, build: Any = None) -> None:
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self.loaded = loaded
        self.policy = loaded.policy
        build = build or (lambda c: guardrail_class(c.type)(c))
        self.guardrails: dict[Direction, list[Guardrail]] = {
            Direction.INPUT: [build(c) for c in self.policy.input],
            Direction.OUTPUT: [build(c) for c in self.policy.output],
        }

    @property
    def name(self) -> str:
        """The policy's name."""
        return self.policy.name

    @property
    def version(self) -> str:
        """The policy's version (content hash)."""
        return self.loaded.version

    def health(self) -> dict[str, dict[str, Any]]:
        """``{guardrail name: health}`` of the guardrails that report any (:meth:`Guardrail.health`)."""
        out: dict[str, dict[str, Any]] = {}
        for guardrails in self.guardrails.values():
            for g in guardrails:
                if report := g.health():
                    out[g.name] = report
        return out

    def moderator(self) -> Moderator | None:
        """First guardrail that can answer ``/v1/moderations`` (output side first), or None."""
        for direction in (Direction.OUTPUT, Direction.INPUT):
            for g in self.guardrails[direction]:
                if isinstance(g, Moderator):
                    return g
        return None

    async def check(
        self,
        text: str,
        direction: Direction,
        *,
        window: tuple[int, int] | None = None,
        messages: list[dict[str, Any]] | None = None,
    ) -> Verdict:
        """Run the policy's guardrails for ``direction`` on ``text``.

        Args:
            text: The prompt or output text.
            direction: Which guardrail list to run.
            window: For a streaming window, ``(start, end)`` character offsets
                of ``text`` in the whole output; only guardrails that support
                streaming run, and redactions are not applied.
            messages: The conversation around ``text`` (for an output: the turns before the reply), for
                guardrails that declare ``needs_context``.

        Returns:
            The :class:`Verdict`.
        """
        guardrails = [g for g in self.guardrails[direction] if window is None or g.streaming]
        chain = _Chain(guardrails, text, direction, ScanContext(messages=list(messages or [])), window is None)
        results = await chain.run()
        scope = (
            {"kind": "window", "start": window[0], "end": window[1]} if window else {"kind": "full", "chars": len(text)}
        )
        overridden = {r.overrides for r in results if r.overrides}  # a cascade's judge overrules its local model
        decision = most_severe([r.decision for r in results if r.name not in overridden])
        return Verdict(direction, decision, chain.text, results, scope)

    async def check_cached(
        self, text: str, direction: Direction, messages: list[dict[str, Any]] | None = None
    ) -> tuple[Verdict, bool]:
        """:meth:`check` a full text, reusing the verdict of an identical text checked before.

        The key is the SHA-256 of direction, the guardrail instances and the text (the conversation around it is
        not part of the key, so a 50-turn agent conversation scores each old turn once). Verdicts with a guardrail
        error are not kept.

        Returns:
            ``(verdict, cached)``.
        """
        guardrails = ",".join(str(id(g)) for g in self.guardrails[direction])
        key = hashlib.sha256(f"{direction.value}\0{guardrails}\0{text}".encode()).hexdigest()
        if (hit := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return hit, True
        verdict = await self.check(text, direction, messages=messages)
        if all(r.error is None for r in verdict.results):
            self._cache[key] = verdict
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return verdict, False


class _Chain:
    """One direction's guardrails run in policy order in one worker thread, each within its ``scan_timeout_s``.

    All of them run in a single worker-thread hand-off (one costs ~0.4 ms on a 2-core VM when the threads sat
    idle: measured 2026-12-07; the default policy runs three output guardrails). The event loop only wakes when
    the chain ends or at a guardrail's deadline (the current one's, or the shortest budget of those after it,
    since one of them may have started meanwhile); a guardrail found past its budget gets
    its ``on_error`` decision ("timed out"), its thread is left to finish on its own (a Python thread cannot be
    stopped) and each guardrail after it runs in a hand-off of its own, as the chain would have run it.

    Args:
        guardrails: The guardrails to run, in order.
        text: The text to scan.
        direction: Input or output.
        context: The conversation; each result is added to ``context.prior`` for the guardrails after it.
        redact: Hand a ``redact`` result's rewritten text to the next guardrail (False for streaming windows).

    Attributes:
        text: The text after redactions, once :meth:`run` returned.
    """

    def __init__(
        self, guardrails: list[Guardrail], text: str, direction: Direction, context: ScanContext, redact: bool
    ) -> None:
        self.guardrails, self.direction, self.context, self.redact = guardrails, direction, context, redact
        self.text = text
        self.results: list[GuardrailResult] = []
        self.started: dict[int, float] = {}  # guardrail index -> time.monotonic() when its scan began
        self.abandoned = False
        self.lock = threading.Lock()  # orders the worker's results against the loop's "timed out"

    def _step(self, guardrail: Guardrail) -> None:
        result = _scan_variants(guardrail, self.text, self.direction, self.context)
        with self.lock:
            if not self.abandoned:
                self._keep(guardrail, result)

    def _keep(self, guardrail: Guardrail, result: GuardrailResult) -> None:
        self.results.append(result)
        self.context.prior[guardrail.name] = result
        if self.redact and result.decision is Decision.REDACT and result.sanitized_text is not None:
            self.text = result.sanitized_text

    def _run_all(self) -> None:
        for i, guardrail in enumerate(self.guardrails):
            if self.abandoned:
                return
            self.started[i] = time.monotonic()
            self._step(guardrail)

    async def run(self) -> list[GuardrailResult]:
        """Run the guardrails; return one result per guardrail, in order."""
        if not self.guardrails:
            return []
        worker = asyncio.ensure_future(asyncio.to_thread(self._run_all))
        seen: dict[int, float] = {}  # guardrail index -> when the loop first saw it pending
        try:
            while not worker.done() and (i := len(self.results)) < len(self.guardrails):
                since = self.started.get(i) or seen.setdefault(i, time.monotonic())
                left = since + self.guardrails[i].scan_timeout_s - time.monotonic()
                if left > 0:
                    # a later guardrail may start (and overrun) before the loop wakes: wake by its budget too
                    later = [g.scan_timeout_s for g in self.guardrails[i + 1 :]]
                    await asyncio.wait({worker}, timeout=min([left, *later]))
                    continue
                with self.lock:
                    if len(self.results) > i:
                        continue  # it finished just now
                    self.abandoned = True  # guardrail i overran: the thread's later results are dropped
                    self._keep(self.guardrails[i], _error_result(self.guardrails[i], "timed out"))
                for guardrail in self.guardrails[i + 1 :]:
                    await self._step_alone(guardrail)
                return self.results
            await worker
        except asyncio.CancelledError:
            self.abandoned = True
            raise
        return self.results

    async def _step_alone(self, guardrail: Guardrail) -> None:
        """Run one guardrail in a hand-off of its own (after the chain's thread was abandoned)."""
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(_scan_variants, guardrail, self.text, self.direction, self.context),
                timeout=guardrail.scan_timeout_s,
            )
        except TimeoutError:
            result = _error_result(guardrail, "timed out")
        self._keep(guardrail, result)


def _error_result(guardrail: Guardrail, message: str) -> GuardrailResult:
    """The result of a guardrail that failed or timed out: its entry's ``on_error`` decision."""
    on_error = Decision(guardrail.config.on_error)
    return GuardrailResult(
        name=guardrail.name,
        score=1.0 if on_error is Decision.BLOCK else 0.0,
        decision=on_error,
        action=f"on_error:{on_error.value}",
        error=message,
    )


def _scan_variants(guardrail: Guardrail, text: str, direction: Direction, context: ScanContext) -> GuardrailResult:
    """Scan ``text`` (and, for a lexical guardrail, its de-obfuscated form) in the calling worker thread; a fault
    becomes the entry's ``on_error`` result. Sets ``latency_ms``. Both scans count against the guardrail's one
    ``scan_timeout_s``."""
    start = time.perf_counter()
    result = _scan_once(guardrail, text, direction, context)
    if result.error is None and guardrail.deobfuscate:
        plain = normalize(text)
        variant = deobfuscate(plain)
        if variant != plain:
            other = _scan_once(guardrail, variant, direction, context)
            worse = other.decision.severity > result.decision.severity or (
                other.decision is result.decision
                and other.decision is not Decision.REDACT
                and other.score > result.score
            )
            if other.error is None and worse:
                other.details = {**other.details, "deobfuscated": True}
                result = other
    result.latency_ms = (time.perf_counter() - start) * 1000.0
    return result


def _scan_once(guardrail: Guardrail, text: str, direction: Direction, context: ScanContext) -> GuardrailResult:
    """:func:`_contained_scan` with every fault (an exception, a result that is not a finite
    :class:`GuardrailResult`) turned into the entry's ``on_error`` result."""
    try:
        result = _contained_scan(guardrail, text, direction, context)
        if not isinstance(result, GuardrailResult):
            raise TypeError(f"scan returned {type(result).__name__}, not a GuardrailResult")
        if not math.isfinite(float(result.score)):
            raise ValueError(f"scan returned a non-finite score {result.score!r}")
    except Exception as exc:  # noqa: BLE001 - a guardrail fault must not fail the request
        return _error_result(guardrail, f"{type(exc).__name__}: {exc}")
    return result


def _contained_scan(guardrail: Guardrail, text: str, direction: Direction, context: ScanContext) -> GuardrailResult:
    """Run ``guardrail.scan`` (or ``scan_in_context`` when it declares ``needs_context``) in a worker thread; turn ``SystemExit``/``KeyboardInterrupt`` into ordinary errors.

    A ``BaseException`` that is not an ``Exception`` would otherwise cross from
    the worker thread into the event loop and stop the server.
    """
    try:
        if guardrail.needs_context:
            return guardrail.scan_in_context(text, direction, context)
        return guardrail.scan(text, direction)
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001
        raise RuntimeError(f"guardrail raised {type(exc).__name__}: {exc}") from None
