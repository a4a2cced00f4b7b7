"""A failed guardrail scan is recorded as an error in the audit row and the metrics, never as a pass."""

from __future__ import annotations

import json

from gateway.observability.audit import make_record
from gateway.observability.metrics import REGISTRY, observe_verdict

FAILED = {
    "name": "judge-x",
    "score": 0.0,
    "decision": "allow",
    "action": "on_error:allow",
    "latency_ms": 2.0,
    "error": "timed out",
    "details": {"error_kind": "timeout"},
}


def test_audit_row_says_error_for_a_failed_scan() -> None:
    row = make_record(
        request_id="r1",
        tenant=None,
        endpoint="/v1/guardrails/check",
        direction="input",
        policy="p",
        policy_version="v",
        decision="allow",
        guardrails=[FAILED],
        latency_ms=2.0,
        text="hello",
    )
    entry = json.loads(row["guardrails"])[0]
    assert entry["outcome"] == "error" and entry["error"] == "timed out"
    assert entry["details"] == {"error_kind": "timeout"}
    long = {**FAILED, "error": None, "details": {"blob": "x" * 10_000}}
    entry = json.loads(
        make_record(
            request_id="r2",
            tenant=None,
            endpoint="e",
            direction="input",
            policy="p",
            policy_version="v",
            decision="allow",
            guardrails=[long],
            latency_ms=1.0,
            text="t",
        )["guardrails"]
    )[0]
    assert entry["outcome"] == "allow" and len(entry["details"]["truncated"]) == 4000


def test_metrics_count_a_failed_scan_as_error() -> None:
    labels = {"policy": "p-outcomes", "guardrail": "judge-x", "shadow": "false"}
    observe_verdict("p-outcomes", {"decision": "allow", "guardrails": [FAILED]}, "input")
    assert REGISTRY.get_sample_value("greenlist_guardrail_decisions_total", {**labels, "decision": "error"}) == 1
    assert REGISTRY.get_sample_value("greenlist_guardrail_decisions_total", {**labels, "decision": "allow"}) is None
    assert (
        REGISTRY.get_sample_value("greenlist_guardrail_errors_total", {"policy": "p-outcomes", "guardrail": "judge-x"})
        == 1
    )
