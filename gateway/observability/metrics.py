"""Prometheus metrics, served at ``GET /metrics``.

=================================================  ===========================================================
metric                                             labels
=================================================  ===========================================================
``greenlist_requests_total``                       ``endpoint``, ``status`` (HTTP status code)
``greenlist_request_latency_seconds``              ``endpoint`` (histogram, until the response starts)
``greenlist_errors_total``                         ``endpoint``, ``status`` (responses with status >= 400)
``greenlist_decisions_total``                      ``policy``, ``direction``, ``decision``, ``shadow``
``greenlist_guardrail_decisions_total``            ``policy``, ``guardrail``, ``decision``, ``shadow``
``greenlist_guardrail_latency_seconds``            ``policy``, ``guardrail`` (histogram)
``greenlist_guardrail_errors_total``               ``policy``, ``guardrail``
``greenlist_watermark_verifications_total``        ``verdict`` (watermarked, not_watermarked, too_short)
``greenlist_policy_reloads_total``                 ``result`` (``applied``, ``rejected``)
``greenlist_policy_info``                          ``policy``, ``version`` (1 for each live version)
``greenlist_rate_limit_store_errors_total``        ``limit`` (Redis unreachable; ``rate_limit_on_error`` decides)
``greenlist_audit_queue_depth``                    records waiting in memory for the audit database
``greenlist_audit_spilled_total``                  records written to the spill file (database slow or down)
``greenlist_audit_replayed_total``                 spilled records later written to the database
``greenlist_audit_spill_pending``                  records in the spill file not yet replayed
=================================================  ===========================================================

All metrics live in one process-wide registry, :data:`REGISTRY`.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("greenlist_requests", "HTTP requests", ["endpoint", "status"], registry=REGISTRY)
REQUEST_LATENCY = Histogram(
    "greenlist_request_latency_seconds",
    "Time until the response starts",
    ["endpoint"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ERRORS = Counter("greenlist_errors", "HTTP responses with status >= 400", ["endpoint", "status"], registry=REGISTRY)
DECISIONS = Counter(
    "greenlist_decisions", "Verdicts per checked text", ["policy", "direction", "decision", "shadow"], registry=REGISTRY
)
GUARDRAIL_DECISIONS = Counter(
    "greenlist_guardrail_decisions",
    "Each guardrail's decision",
    ["policy", "guardrail", "decision", "shadow"],
    registry=REGISTRY,
)
GUARDRAIL_LATENCY = Histogram(
    "greenlist_guardrail_latency_seconds",
    "Guardrail scan time",
    ["policy", "guardrail"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GUARDRAIL_ERRORS = Counter(
    "greenlist_guardrail_errors", "Guardrail scans that raised or timed out", ["policy", "guardrail"], registry=REGISTRY
)
WATERMARK_VERIFICATIONS = Counter(
    "greenlist_watermark_verifications", "Watermark verifications by verdict", ["verdict"], registry=REGISTRY
)
POLICY_RELOADS = Counter(
    "greenlist_policy_reloads", "Policy reload attempts that changed or were rejected", ["result"], registry=REGISTRY
)
POLICY_INFO = Gauge(
    "greenlist_policy_info", "Live policy versions (1 per live version)", ["policy", "version"], registry=REGISTRY
)

RATE_LIMIT_ERRORS = Counter(
    "greenlist_rate_limit_store_errors", "Rate-limit store (Redis) failures", ["limit"], registry=REGISTRY
)
AUDIT_QUEUE_DEPTH = Gauge("greenlist_audit_queue_depth", "Audit records waiting in memory", registry=REGISTRY)
AUDIT_SPILLED = Counter("greenlist_audit_spilled", "Audit records written to the spill file", registry=REGISTRY)
AUDIT_REPLAYED = Counter("greenlist_audit_replayed", "Spilled audit records written to the database", registry=REGISTRY)
AUDIT_SPILL_PENDING = Gauge(
    "greenlist_audit_spill_pending", "Audit records in the spill file not yet replayed", registry=REGISTRY
)

_KNOWN = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/moderations",
    "/v1/guardrails/check",
    "/v1/models",
    "/healthz",
    "/metrics",
    "/console",
    "/admin/policies",
    "/admin/policies/reload",
    "/admin/audit",
)


def endpoint_label(path: str) -> str:
    """Bounded label for a request path (unknown paths become ``other``)."""
    if path in _KNOWN:
        return path
    if path.startswith("/v1/watermark/"):
        return path if len(path) < 48 else "/v1/watermark/*"
    return "other"


def observe_verdict(policy: str, verdict_dict: dict[str, Any], direction: str, shadow: bool = False) -> None:
    """Count one verdict and its guardrails' decisions and latencies.

    Args:
        policy: Policy name.
        verdict_dict: ``Verdict.to_dict()``.
        direction: ``input`` or ``output``.
        shadow: True for a shadow policy's verdict.
    """
    s = "true" if shadow else "false"
    DECISIONS.labels(policy, direction, verdict_dict["decision"], s).inc()
    for g in verdict_dict.get("guardrails", []):
        outcome = "error" if g.get("error") else g["decision"]  # a failed scan is never counted as a pass
        GUARDRAIL_DECISIONS.labels(policy, g["name"], outcome, s).inc()
        GUARDRAIL_LATENCY.labels(policy, g["name"]).observe(float(g.get("latency_ms", 0.0)) / 1000.0)
        if g.get("error"):
            GUARDRAIL_ERRORS.labels(policy, g["name"]).inc()


def set_policy_versions(versions: dict[str, str]) -> None:
    """Replace the ``greenlist_policy_info`` series with the live ``{policy: version}``."""
    POLICY_INFO.clear()
    for name, version in versions.items():
        POLICY_INFO.labels(name, version).set(1)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware counting requests, errors and latency (works with streamed responses).

    Args:
        app: The wrapped ASGI app.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_label(scope.get("path", ""))
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                REQUEST_LATENCY.labels(endpoint).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            code = str(status["code"])
            REQUESTS.labels(endpoint, code).inc()
            if status["code"] >= 400:
                ERRORS.labels(endpoint, code).inc()
