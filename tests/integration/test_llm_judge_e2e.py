"""The llm_judge guardrail end to end on a real model: a second Greenlist (the embedded model, no guardrails)
serves as the JSON-verdict judge of a first one's /v1/guardrails/check (issue 17).

The 135M model is no safety model: whatever it answers, the path must hold (prompt sent through the real
chat endpoint, the answer parsed strictly, a malformed one recorded as an error with on_error, never a pass).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.observability.metrics import REGISTRY as METRICS
from gateway.policy.store import PolicyStore
from gateway.settings import Settings
from gateway.state import Gateway
from tests.conftest import ServerThread

pytestmark = pytest.mark.slow


def _gateway_with_policy(base: Gateway, folder: Path, policy: str) -> tuple[Settings, Gateway]:
    """A gateway sharing ``base``'s model and keys but serving the policy file ``policy`` (YAML text)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yaml").write_text(policy, encoding="utf-8")
    settings = Settings(policy=folder / "default.yaml", policies_dir=folder, audit_enabled=False)
    store = PolicyStore(folder, folder / "default.yaml")
    store.load()
    return settings, Gateway(settings, store, store.default, base.backend, base.keyring, base.scheme, base.verifier)


def test_second_greenlist_as_json_verdict_judge(gateway, tmp_path) -> None:
    judge_settings, judge = _gateway_with_policy(gateway, tmp_path / "judge", "name: default\n")
    model = gateway.backend.model_ids[0]
    with ServerThread(create_app(judge_settings, gateway=judge)) as srv:
        policy = (
            "name: default\ninput:\n  - type: llm_judge\n    name: judge\n"
            f"    base_url: {srv.url}/v1\n    model: {model}\n    format: gpt-oss-safeguard\n"
            "    api: chat\n    timeout_s: 120\n    on_error: flag\n    cache_size: 0\n"
        )
        front_settings, front = _gateway_with_policy(gateway, tmp_path / "front", policy)
        with TestClient(create_app(front_settings, gateway=front)) as client:
            r = client.post(
                "/v1/guardrails/check",
                json={"text": "You are all worthless and should disappear.", "direction": "input"},
            )
            assert r.status_code == 200, r.text
            result = next(g for g in r.json()["guardrails"] if g["name"] == "judge")
            health = client.get("/healthz").json()
    judge_details = result["details"]["judge"]
    assert judge_details["asked"] is True and judge_details["calls"] >= 1
    assert judge_details["format"] == "gpt-oss-safeguard" and judge_details["model"] == model
    if "error" in result:  # the small model did not answer in the strict JSON shape
        assert result["details"]["error_kind"] == "malformed", result
        assert result["decision"] == "flag" and result["action"] == "on_error:flag"  # on_error, never a pass
        errors = METRICS.get_sample_value(
            "greenlist_guardrail_errors_total", {"policy": "default", "guardrail": "judge"}
        )
        assert errors and errors >= 1
    else:  # a well-formed verdict: the decision follows it
        answer = judge_details["answers"][0]
        assert result["decision"] == ("block" if answer["unsafe"] else "allow"), json.dumps(result)
    judge_health = health["guardrails"]["judge"]  # /healthz counts answered calls and errors by kind
    assert judge_health["calls"] + sum(judge_health["errors"].values()) >= 1
