"""LLM-judge guardrail: asks a served safety model (Llama Guard, ShieldGemma, gpt-oss-safeguard, a moderation API).

Policy entry (all fields: :class:`~guardrails.llm_judge.config.LLMJudgeConfig`; guide: ``docs/llm_judge.md``)::

    - type: llm_judge
      base_url: http://guard:8000/v1
      model: meta-llama/Llama-Guard-3-1B
      format: llama-guard
      on_error: flag
      cascade: {after: toxicity, band: [0.2, 0.8]}

Failures are never a pass: a timeout, connection error, 5xx, 429, unparseable answer or open circuit
gives a result with ``error`` set, ``details["error_kind"]`` naming the failure, and the decision of
``on_error`` (``allow`` included: the text passes, the result still says ``error``).

Cost control: verdicts are cached by (format, model, text hash); each entry has its own concurrency limit
and circuit breaker; with a cascade only texts the local classifier is unsure about reach the judge.
``streaming = False``: the judge never runs on the per-sentence (or per-token) checks of a streamed output,
only on its whole text once generation ends.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from greenlist.breaker import CircuitBreaker
from greenlist.clock import SYSTEM_CLOCK, Clock
from guardrails.base import Decision, Direction, Guardrail, GuardrailResult, ScanContext, action_decision, most_severe
from guardrails.llm_judge.cache import LRUCache
from guardrails.llm_judge.cascade import CascadeCall, consult
from guardrails.llm_judge.client import JudgeClient, JudgeError
from guardrails.llm_judge.config import OTHER, LLMJudgeConfig
from guardrails.llm_judge.formats import Unit, Verdict, get_format
from guardrails.llm_judge.units import build_units


@dataclass
class UnitOutcome:
    """The judge's answer (or failure) about one unit: ``verdict`` xor ``error``, cache hit, latency (ms)."""

    unit: Unit
    verdict: Verdict | None = None
    error: JudgeError | None = None
    cached: bool = False
    latency_ms: float = 0.0
    calls: int = 0


class LLMJudgeGuardrail(Guardrail):
    """Consults an LLM safety judge over an OpenAI-compatible API.

    Args:
        config: An :class:`LLMJudgeConfig`.
        clock: Time source for latency and the circuit breaker (tests pass a ``ManualClock``).
        transport: Optional ``httpx`` transport (benchmarks use ``httpx.MockTransport``).

    Raises:
        ValueError: when ``api_key_env`` names an unset environment variable.
        OSError: when ``policy_file`` cannot be read.
    """

    Config = LLMJudgeConfig
    streaming = False
    deobfuscate = False
    needs_context = True

    def __init__(
        self, config: LLMJudgeConfig, clock: Clock = SYSTEM_CLOCK, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(config)
        self.config: LLMJudgeConfig = config
        api_key = None
        if config.api_key_env:
            api_key = os.environ.get(config.api_key_env)
            if not api_key:
                raise ValueError(
                    f"llm_judge {config.display_name!r}: environment variable "
                    f"{config.api_key_env} (api_key_env) is not set"
                )
        self.clock = clock
        self.format = get_format(config)
        self.mapping: dict[str, str | None] = {**self.format.default_categories, **config.categories}
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_s, clock)
        self.client = JudgeClient(
            config.base_url, api_key, config.timeout_s, config.max_concurrency, self.breaker, clock, transport
        )
        self.cache: LRUCache[tuple[str, str, str], Verdict] = LRUCache(config.cache_size)
        self.pool = ThreadPoolExecutor(
            max_workers=config.max_concurrency, thread_name_prefix=f"llm-judge-{config.display_name}"
        )

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Judge a bare ``text`` (no conversation, no cascade input); see :meth:`scan_in_context`."""
        return self.scan_in_context(text, direction, ScanContext())

    @property
    def scan_timeout_s(self) -> float:
        """Budget of one scan: up to four judge calls in sequence (ShieldGemma's four policies, one call each)."""
        return self.config.timeout_s * 4 + 1.0

    def scan_in_context(self, text: str, direction: Direction, context: ScanContext) -> GuardrailResult:
        """Judge ``text`` in its conversation, or let the local decision stand (cascade).

        Args:
            text: The scanned text (input: user-side messages; output: the reply).
            direction: ``input`` or ``output``.
            context: ``messages`` (the conversation) and ``prior`` (earlier results, for the cascade).

        Returns:
            A result with ``details = {"judge": {"asked", "format", "model", "units", "calls", "cache_hits",
            "latency_ms", "answers": [...]}, "categories": {greenlist category: score}, "flagged_categories",
            "judge_categories", "ignored_categories", "breaker", "cascade": {...}}`` and, on failure,
            ``error`` plus ``details["error_kind"]``. Never raises for judge failures.
        """
        call: CascadeCall | None = None
        if self.config.cascade is not None:
            call = consult(self.config.cascade, context.prior)
            if not call.ask:
                return self._local_stands(call)
        start = self.clock.monotonic()
        units = build_units(text, direction, context.messages, self.config.context_turns)
        outcomes = self._judge(units)
        return self._result(outcomes, call, (self.clock.monotonic() - start) * 1000.0)

    def _key(self, unit: Unit) -> tuple[str, str, str]:
        return self.format.fingerprint(), self.config.model, unit.digest()

    def _judge(self, units: list[Unit]) -> list[UnitOutcome]:
        outcomes: dict[tuple[str, str, str], UnitOutcome] = {}
        missing: list[tuple[tuple[str, str, str], Unit]] = []
        for unit in units:
            key = self._key(unit)
            if key in outcomes:
                continue
            verdict = self.cache.get(key)
            if verdict is not None:
                outcomes[key] = UnitOutcome(unit, verdict, cached=True)
            else:
                missing.append((key, unit))
        futures = [(key, self.pool.submit(self._ask, unit)) for key, unit in missing]
        for key, fut in futures:
            outcomes[key] = fut.result()
            if outcomes[key].verdict is not None:
                self.cache.put(key, outcomes[key].verdict)  # type: ignore[arg-type]
        return list(outcomes.values())

    def _ask(self, unit: Unit) -> UnitOutcome:
        verdicts, latency = [], 0.0
        requests = self.format.requests(unit)
        try:
            for req in requests:
                verdict, ms = self.client.call(req, partial(self.format.parse, req))
                verdicts.append(verdict)
                latency += ms
        except JudgeError as exc:
            return UnitOutcome(unit, error=exc, latency_ms=latency, calls=len(verdicts) + 1)
        return UnitOutcome(unit, self.format.combine(verdicts), latency_ms=latency, calls=len(requests))

    def _map(self, verdict: Verdict) -> tuple[dict[str, float], list[str], list[str]]:
        """Greenlist category scores, the judge categories that count, and the ignored ones."""
        scores: dict[str, float] = {}
        counted, ignored = [], []
        for code, s in verdict.category_scores.items():
            target = self.mapping.get(code, OTHER)
            if target is not None:
                scores[target] = max(scores.get(target, 0.0), s)
        for code in verdict.categories or ((OTHER,) if verdict.unsafe else ()):
            target = self.mapping.get(code, OTHER)
            if target is None:
                ignored.append(code)
                continue
            counted.append(code)
            scores[target] = max(
                scores.get(target, 0.0),
                verdict.score if not verdict.category_scores else verdict.category_scores.get(code, verdict.score),
            )
        return scores, counted, ignored

    def _result(self, outcomes: list[UnitOutcome], call: CascadeCall | None, wall_ms: float) -> GuardrailResult:
        scores: dict[str, float] = {}
        flagged: list[str] = []
        counted: list[str] = []
        ignored: list[str] = []
        answers: list[dict[str, Any]] = []
        errors = [o.error for o in outcomes if o.error is not None]
        for i, o in enumerate(outcomes):
            if o.verdict is not None:
                s, c, ig = self._map(o.verdict)
                for g, v in s.items():
                    scores[g] = max(scores.get(g, 0.0), v)
                hit = [self.mapping.get(code, OTHER) for code in c]
                flagged += [g for g in hit if g is not None and g not in flagged]
                counted += [x for x in c if x not in counted]
                ignored += [x for x in ig if x not in ignored]
                if not o.cached or c:
                    answers.append(
                        {"unit": i, "cached": o.cached, "latency_ms": round(o.latency_ms, 3), **o.verdict.to_dict()}
                    )
            elif o.error is not None:
                answers.append({"unit": i, "error": o.error.kind, "reason": o.error.reason[:300]})
        fired = bool(flagged)
        score = max((scores[g] for g in flagged), default=max(scores.values(), default=0.0))
        decision = action_decision(self.config.action) if fired else Decision.ALLOW
        action: str | None = self.config.action if fired else None
        details: dict[str, Any] = {
            "judge": {
                "asked": True,
                "format": self.format.name,
                "model": self.config.model,
                "units": len(outcomes),
                "calls": sum(o.calls for o in outcomes),
                "cache_hits": sum(o.cached for o in outcomes),
                "latency_ms": round(wall_ms, 3),
                "answers": answers,
            },
            "categories": {g: round(v, 6) for g, v in scores.items()},
            "flagged_categories": flagged,
            "judge_categories": counted,
            "ignored_categories": ignored,
            "breaker": self.breaker.state,
        }
        if call is not None and self.config.cascade is not None:
            details["cascade"] = call.to_dict(self.config.cascade)
        error = None
        if errors:
            on_error = Decision(self.config.on_error)
            error = "; ".join(dict.fromkeys(str(e) for e in errors))
            details["error_kind"] = errors[0].kind
            if on_error.severity > decision.severity or not fired:
                decision, action = most_severe([decision, on_error]), f"on_error:{on_error.value}"
            score = max(score, 1.0 if on_error is Decision.BLOCK else 0.0)
        overrides = self.config.cascade.after if call is not None and self.config.cascade is not None else None
        return GuardrailResult(
            name=self.name,
            score=score,
            decision=decision,
            action=action,
            details=details,
            error=error,
            overrides=overrides,
        )

    def _local_stands(self, call: CascadeCall) -> GuardrailResult:
        local = call.local
        assert local is not None and self.config.cascade is not None  # consult() only skips with a local result
        return GuardrailResult(
            name=self.name,
            score=float(local.score),
            decision=local.decision,
            action=local.action,
            details={
                "judge": {
                    "asked": False,
                    "format": self.format.name,
                    "model": self.config.model,
                    "reason": call.reason,
                },
                "cascade": call.to_dict(self.config.cascade),
                "breaker": self.breaker.state,
            },
        )

    def health(self) -> dict[str, Any]:
        """State for ``/healthz``: ``{"status": "ok" | "degraded" | "down", "format", "model", "base_url",
        "breaker": {"state", "consecutive_failures"}, "calls", "errors": {kind: n}, "last_error",
        "last_error_at", "cache": {"size", "maxsize", "hits", "misses"}}``.

        ``down``: the circuit is open (calls fail at once with ``on_error``); ``degraded``: half-open or
        failures since the last success; ``ok`` otherwise.
        """
        info = self.client.health()
        state, failures = info["breaker"]["state"], info["breaker"]["consecutive_failures"]
        status = "down" if state == "open" else ("degraded" if state == "half-open" or failures else "ok")
        return {
            "status": status,
            "format": self.format.name,
            "model": self.config.model,
            "base_url": self.config.base_url,
            **info,
            "cache": self.cache.stats(),
        }

    def close(self) -> None:
        """Stop the worker threads and close the HTTP pool."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


__all__ = ["LLMJudgeConfig", "LLMJudgeGuardrail"]
