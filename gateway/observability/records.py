"""Glue between the request pipeline and the trust-team features: policy matching, audit, metrics, shadow.

The routes call three functions:

* :func:`request_context` once per request (request id, tenant, scopes, endpoint);
* :func:`resolve` to pick the policy (and its shadow) through the gateway's
  :class:`~gateway.policy.store.PolicyStore`;
* :func:`after_check` after every full-text verdict: it counts the verdict in
  the metrics, queues its audit record and, when the policy has a shadow,
  schedules the shadow policy's check of the same text in the background (its
  verdict is audited with ``shadow=True`` and never changes the response).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.policy.snapshot import Resolution
from gateway.serving.pipeline import Pipeline, Verdict

if TYPE_CHECKING:
    from gateway.state import Gateway

log = logging.getLogger("greenlist.trust")

REQUEST_ID_HEADER = "x-request-id"

_shadow_tasks: set[asyncio.Task[Any]] = set()


@dataclass
class RequestContext:
    """Who asked for what, for matching and auditing.

    Attributes:
        request_id: Id shared by the request's audit rows (the client's
            ``x-request-id`` header when it sent one, else a new one).
        tenant: The API key's tenant (``request.state.tenant``), None without auth.
        scopes: The API key's scopes (``request.state.scopes``), None without auth.
        endpoint: The route path.
        started: ``time.perf_counter()`` at the start.
    """

    request_id: str
    tenant: str | None = None
    scopes: set[str] | None = None
    endpoint: str = ""
    started: float = field(default_factory=time.perf_counter)


def request_context(request: Any = None, endpoint: str | None = None) -> RequestContext:
    """Build the :class:`RequestContext` of a Starlette ``request`` (None: an anonymous internal call)."""
    if request is None:
        return RequestContext(uuid.uuid4().hex, endpoint=endpoint or "")
    state = getattr(request, "state", None)
    rid = getattr(state, "request_id", None) or request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    rid = str(rid)[:64]
    return RequestContext(
        rid, getattr(state, "tenant", None), getattr(state, "scopes", None), endpoint or request.url.path
    )


def resolve(gw: Gateway, ctx: RequestContext, requested: str | None, model: str | None = None) -> Resolution:
    """Pick the live policy (and shadow) for a request.

    Args:
        gw: The :class:`~gateway.state.Gateway`.
        ctx: The request's context.
        requested: Policy named in the body, if any.
        model: Requested model name, if any.

    Returns:
        The :class:`~gateway.policy.store.Resolution`.

    Raises:
        gateway.errors.APIError: 403 / 404 / 503 (see :meth:`PolicyStore.resolve`).
    """
    return gw.store.resolve(tenant=ctx.tenant, scopes=ctx.scopes, model=model, requested=requested)


def after_check(
    gw: Gateway,
    ctx: RequestContext,
    pipeline: Pipeline,
    verdict: Verdict,
    text: str,
    shadow: Pipeline | None = None,
    enforced: str | None = None,
) -> None:
    """Record a full-text verdict (metrics + audit) and start its shadow check. Never raises.

    Args:
        gw: The gateway (its ``audit`` may be None: no audit log).
        ctx: The request's context.
        pipeline: The live policy that produced ``verdict``.
        verdict: The verdict.
        text: The text that was checked (before redaction).
        shadow: The shadow pipeline to run on ``text``, or None.
        enforced: What the gateway did (default: ``verdict.decision``).
    """
    try:
        direction = verdict.direction.value
        body = verdict.to_dict()
        from gateway.observability.metrics import observe_verdict

        observe_verdict(pipeline.name, body, direction)
        _audit(gw, ctx, pipeline, body, direction, text, shadow=False, enforced=enforced)
        if shadow is not None:
            task = asyncio.get_running_loop().create_task(
                _run_shadow(gw, ctx, shadow, pipeline, text, verdict, enforced or verdict.decision.value)
            )
            _shadow_tasks.add(task)
            task.add_done_callback(_shadow_tasks.discard)
    except Exception:  # noqa: BLE001 - bookkeeping never fails a request
        log.exception("audit/metrics of request %s failed", ctx.request_id)


async def _run_shadow(
    gw: Gateway, ctx: RequestContext, shadow: Pipeline, live: Pipeline, text: str, live_verdict: Verdict, enforced: str
) -> None:
    try:
        verdict = await shadow.check(text, live_verdict.direction)
        body = verdict.to_dict()
        from gateway.observability.metrics import observe_verdict

        observe_verdict(shadow.name, body, verdict.direction.value, shadow=True)
        _audit(gw, ctx, shadow, body, verdict.direction.value, text, shadow=True, live=live, enforced=enforced)
        if verdict.decision != live_verdict.decision:
            log.info(
                "shadow %s@%s would have decided %s where %s@%s decided %s (request %s)",
                shadow.name,
                shadow.version,
                verdict.decision.value,
                live.name,
                live.version,
                live_verdict.decision.value,
                ctx.request_id,
            )
    except Exception:  # noqa: BLE001
        log.exception("shadow check of request %s failed", ctx.request_id)


def _audit(
    gw: Gateway,
    ctx: RequestContext,
    pipeline: Pipeline,
    body: dict[str, Any],
    direction: str,
    text: str,
    *,
    shadow: bool,
    live: Pipeline | None = None,
    enforced: str | None = None,
) -> None:
    audit = gw.audit
    if audit is None or not pipeline.policy.audit.enabled:
        return
    from gateway.observability.audit import make_record

    guardrails = body.get("guardrails", [])
    latency = sum(float(g.get("latency_ms", 0.0)) for g in guardrails)
    audit.record(
        make_record(
            request_id=ctx.request_id,
            tenant=ctx.tenant,
            endpoint=ctx.endpoint,
            direction=direction,
            policy=pipeline.name,
            policy_version=pipeline.version,
            decision=body["decision"],
            guardrails=guardrails,
            latency_ms=latency,
            text=text,
            store_text=pipeline.policy.audit.store_text,
            shadow=shadow,
            live_policy=live.name if live is not None else None,
            enforced=enforced,
        )
    )


def audit_moderation(
    gw: Gateway,
    ctx: RequestContext,
    guardrail: str,
    inputs: list[str],
    results: list[dict[str, Any]],
    latency_ms: float,
) -> None:
    """Audit ``/v1/moderations`` results (one row per input, policy ``moderation``). Never raises."""
    try:
        audit = gw.audit
        store_text = gw.pipeline.policy.audit.store_text
        from gateway.observability.audit import make_record
        from gateway.observability.metrics import observe_verdict

        per = latency_ms / max(1, len(inputs))
        for text, res in zip(inputs, results, strict=False):
            scores = res.get("category_scores", {})
            decision = "flag" if res.get("flagged") else "allow"
            guardrails = [
                {
                    "name": guardrail,
                    "score": round(float(max(scores.values(), default=0.0)), 6),
                    "decision": decision,
                    "action": "flag" if res.get("flagged") else None,
                    "latency_ms": per,
                }
            ]
            observe_verdict("moderation", {"decision": decision, "guardrails": guardrails}, "input")
            if audit is not None:
                audit.record(
                    make_record(
                        request_id=ctx.request_id,
                        tenant=ctx.tenant,
                        endpoint=ctx.endpoint,
                        direction="input",
                        policy="moderation",
                        policy_version="-",
                        decision=decision,
                        guardrails=guardrails,
                        latency_ms=per,
                        text=text,
                        store_text=store_text,
                    )
                )
    except Exception:  # noqa: BLE001
        log.exception("audit of moderation request %s failed", ctx.request_id)


async def drain_shadow(timeout: float = 30.0) -> None:
    """Wait (up to ``timeout`` s) for the shadow checks still running, e.g. before shutdown or in tests."""
    tasks = [t for t in list(_shadow_tasks) if not t.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
