"""The llm_judge guardrail against stub judge endpoints on real loopback sockets (issue 17).

Per format: the prompt sent, the category and decision read back, malformed answers as errors; failures
(timeout, connection refused, 5xx, 429) recorded as ``error`` with ``on_error`` deciding; the circuit
breaker opening and resetting on a ManualClock; the cascade; a 50-turn conversation judged turn by turn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from greenlist.clock import ManualClock
from guardrails import Decision, Direction, GuardrailResult, ScanContext, guardrail_class
from guardrails.llm_judge import LLMJudgeConfig, LLMJudgeGuardrail
from guardrails.llm_judge.formats import Turn, Unit
from tests.guardrails.judge_stub import HANG, Stub, chat, completion, moderation, refused_url, serve_stub


@pytest.fixture(scope="module")
def server() -> Iterator[Stub]:
    yield from serve_stub()


@pytest.fixture()
def stub(server: Stub) -> Stub:
    server.requests.clear()
    return server


def judge(stub_or_url: Stub | str, fmt: str, clock: ManualClock | None = None, **kw: Any) -> LLMJudgeGuardrail:
    url = stub_or_url if isinstance(stub_or_url, str) else stub_or_url.base_url
    cfg = LLMJudgeConfig(base_url=url, model="guard", format=fmt, **kw)  # type: ignore[arg-type]
    return LLMJudgeGuardrail(cfg, clock=clock or ManualClock())


def local(scores: dict[str, float], decision: Decision = Decision.ALLOW) -> dict[str, GuardrailResult]:
    """A prior toxicity result named ``toxicity`` with these category scores."""
    return {
        "toxicity": GuardrailResult("toxicity", scores.get("toxicity", 0.0), decision, details={"categories": scores})
    }


# --- Llama Guard -------------------------------------------------------------------------------------------


def test_llama_guard_unsafe_maps_codes_and_blocks(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("unsafe\nS1,S10")
    r = judge(stub, "llama-guard").scan("I will hurt them all", Direction.INPUT)
    assert r.error is None and r.decision is Decision.BLOCK and r.score == 1.0
    assert r.details["flagged_categories"] == ["violence", "hate"]
    assert r.details["judge_categories"] == ["S1", "S10"]
    path, body, _ = stub.requests[0]
    assert path == "/v1/completions" and body["model"] == "guard"
    prompt = body["prompt"]
    assert prompt.startswith("<|start_header_id|>user<|end_header_id|>")
    assert "'User' messages" in prompt and "S14: Code Interpreter Abuse." in prompt
    assert "User: I will hurt them all\n\n<END CONVERSATION>" in prompt
    assert prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_llama_guard_output_check_shows_user_turn_and_reply(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("safe")
    g = judge(stub, "llama-guard", llama_guard_version=4)
    ctx = ScanContext(messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "Hi there"}])
    r = g.scan_in_context("Hello, how can I help?", Direction.OUTPUT, ctx)
    assert r.error is None and r.decision is Decision.ALLOW and r.score == 0.0
    prompt = stub.requests[0][1]["prompt"]
    assert "'Agent' messages" in prompt and "User: Hi there\n\nAgent: Hello, how can I help?" in prompt
    assert "be nice" not in prompt and prompt.startswith("<|header_start|>user<|header_end|>")


def test_llama_guard_ignored_category_does_not_fire(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("unsafe\nS8")
    r = judge(stub, "llama-guard", categories={"S8": None}).scan("lyrics", Direction.INPUT)
    assert r.decision is Decision.ALLOW and r.error is None and r.details["ignored_categories"] == ["S8"]


@pytest.mark.parametrize("answer", ["maybe", "unsafe", "unsafe\nS15", "safe\nS1", "", "Safe", "unsafe\nS1\nS2"])
def test_llama_guard_malformed_answer_is_an_error(stub: Stub, answer: str) -> None:
    stub.reply = lambda path, body: completion(answer)
    r = judge(stub, "llama-guard", on_error="flag").scan("hello", Direction.INPUT)
    assert r.error is not None and r.details["error_kind"] == "malformed"
    assert r.decision is Decision.FLAG and r.action == "on_error:flag"


# --- ShieldGemma -------------------------------------------------------------------------------------------


def test_shieldgemma_scores_from_logprobs_one_call_per_policy(stub: Stub) -> None:
    def reply(path: str, body: dict[str, Any]) -> Any:
        yes = 0.9 if "No Harassment" in body["prompt"] else 0.1
        return completion("Yes" if yes > 0.5 else "No", {"Yes": math.log(yes), "No": math.log(1 - yes)})

    stub.reply = reply
    r = judge(stub, "shieldgemma").scan("you are worthless", Direction.INPUT)
    assert len(stub.requests) == 4 and all(b["logprobs"] == 20 and b["max_tokens"] == 1 for _, b, _ in stub.requests)
    assert r.decision is Decision.BLOCK and r.details["flagged_categories"] == ["harassment"]
    assert r.score == pytest.approx(0.9) and r.details["categories"]["hate"] == pytest.approx(0.1)
    assert "Human Question: you are worthless" in stub.requests[0][1]["prompt"]


def test_shieldgemma_without_logprobs_scores_zero_or_one(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("No")
    r = judge(stub, "shieldgemma", shieldgemma_mode="combined").scan("nice day", Direction.OUTPUT)
    assert len(stub.requests) == 1 and r.decision is Decision.ALLOW and r.score == 0.0 and r.error is None
    prompt = stub.requests[0][1]["prompt"]
    assert "Chatbot Response: nice day" in prompt and prompt.count('* "No ') == 4


@pytest.mark.parametrize("answer", ["Maybe", "", "yes"])
def test_shieldgemma_malformed_answer_is_an_error(stub: Stub, answer: str) -> None:
    stub.reply = lambda path, body: completion(answer)
    r = judge(stub, "shieldgemma", on_error="block").scan("x", Direction.INPUT)
    assert r.error is not None and r.details["error_kind"] == "malformed" and r.decision is Decision.BLOCK


# --- JSON verdict (gpt-oss-safeguard) ----------------------------------------------------------------------


def test_json_verdict_category_and_policy_in_system_prompt(stub: Stub) -> None:
    stub.reply = lambda path, body: chat('{"violation": 1, "category": "harassment", "rationale": "insult"}')
    r = judge(stub, "gpt-oss-safeguard", policy="## Rules\nNo insults.", action="flag").scan("idiot", Direction.INPUT)
    assert r.decision is Decision.FLAG and r.details["flagged_categories"] == ["harassment"]
    assert r.details["judge"]["answers"][0]["rationale"] == "insult"
    path, body, _ = stub.requests[0]
    assert path == "/v1/chat/completions"
    assert body["messages"][0]["role"] == "system" and body["messages"][0]["content"].startswith("## Rules")
    assert '"violation": 0 or 1' in body["messages"][0]["content"] and body["messages"][1]["content"] == "idiot"


@pytest.mark.parametrize(
    "content, flagged",
    [('```json\n{"violation": 0, "category": null}\n```', []), ('{"violation": 1, "category": "spam"}', ["other"])],
)
def test_json_verdict_fence_and_unknown_category(stub: Stub, content: str, flagged: list[str]) -> None:
    stub.reply = lambda path, body: chat(content)
    r = judge(stub, "gpt-oss-safeguard").scan("buy now", Direction.INPUT)
    assert r.error is None and r.details["flagged_categories"] == flagged


@pytest.mark.parametrize(
    "content",
    [
        '{"violation": true, "category": "hate"}',
        '{"violation": "1", "category": "x"}',
        '{"violation": 1}',
        "violation: 1",
        '[{"violation": 0}]',
        '{"violation": 0} and more',
        '{"violation": 2, "category": "hate"}',
    ],
)
def test_json_verdict_malformed_is_an_error(stub: Stub, content: str) -> None:
    stub.reply = lambda path, body: chat(content)
    r = judge(stub, "gpt-oss-safeguard", on_error="allow").scan("x", Direction.INPUT)
    assert r.error is not None and r.details["error_kind"] == "malformed"
    assert r.decision is Decision.ALLOW and r.action == "on_error:allow"  # passes, but recorded as an error


# --- OpenAI moderation -------------------------------------------------------------------------------------


def test_openai_moderation_maps_categories(stub: Stub) -> None:
    stub.reply = lambda path, body: moderation(
        {"hate": False, "harassment/threatening": True}, {"hate": 0.2, "harassment/threatening": 0.93}
    )
    r = judge(stub, "openai-moderation").scan("I know where you live", Direction.INPUT)
    assert stub.requests[0][:2] == ("/v1/moderations", {"model": "guard", "input": "I know where you live"})
    assert r.decision is Decision.BLOCK and r.details["flagged_categories"] == ["harassment"]
    assert r.score == pytest.approx(0.93)


def test_openai_moderation_greenlist_toxicity_only_is_ignored(stub: Stub) -> None:
    stub.reply = lambda path, body: moderation({"toxicity": True, "hate": False}, {"toxicity": 0.6, "hate": 0.1})
    r = judge(stub, "openai-moderation").scan("meh", Direction.INPUT)
    assert r.decision is Decision.ALLOW and r.error is None and r.details["ignored_categories"] == ["toxicity"]


@pytest.mark.parametrize(
    "payload",
    [
        {"results": []},
        {"results": [{"flagged": "yes", "categories": {}, "category_scores": {}}]},
        {"results": [{"flagged": False, "categories": {"hate": False}, "category_scores": {"hate": 7}}]},
        "not json",
    ],
)
def test_openai_moderation_malformed_is_an_error(stub: Stub, payload: Any) -> None:
    stub.reply = lambda path, body: payload
    r = judge(stub, "openai-moderation").scan("x", Direction.INPUT)
    assert r.error is not None and r.details["error_kind"] == "malformed" and r.decision is Decision.BLOCK


# --- Failures: never a silent pass -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "on_error, decision", [("block", Decision.BLOCK), ("flag", Decision.FLAG), ("allow", Decision.ALLOW)]
)
@pytest.mark.parametrize(
    "status, kind", [(500, "http_5xx"), (503, "http_5xx"), (429, "rate_limited"), (401, "http_4xx")]
)
def test_http_errors_recorded_as_error(stub: Stub, status: int, kind: str, on_error: str, decision: Decision) -> None:
    stub.reply = lambda path, body: (status, {"error": {"message": "nope"}})
    g = judge(stub, "llama-guard", on_error=on_error)
    r = g.scan("hello", Direction.INPUT)
    assert r.error is not None and str(status) in r.error and r.details["error_kind"] == kind
    assert r.decision is decision and r.action == f"on_error:{on_error}"
    assert g.health()["errors"] == {kind: 1} and g.cache.stats()["size"] == 0  # failures are never cached


def test_timeout_recorded_as_error(stub: Stub) -> None:
    stub.reply = lambda path, body: HANG
    r = judge(stub, "gpt-oss-safeguard", timeout_s=0.3, on_error="flag").scan("hello", Direction.INPUT)
    assert r.details["error_kind"] == "timeout" and "0.3 s" in (r.error or "") and r.decision is Decision.FLAG


def test_connection_refused_recorded_as_error() -> None:
    r = judge(refused_url(), "openai-moderation", on_error="allow").scan("hello", Direction.INPUT)
    assert r.details["error_kind"] == "connection" and r.error and r.decision is Decision.ALLOW


def test_unsafe_unit_and_failed_unit_keep_the_more_severe(stub: Stub) -> None:
    stub.reply = lambda path, body: (
        chat('{"violation": 1, "category": "hate"}')
        if "slur" in body["messages"][1]["content"]
        else (502, "bad gateway")
    )
    ctx = ScanContext(messages=[{"role": "user", "content": "a slur"}, {"role": "user", "content": "other"}])
    r = judge(stub, "gpt-oss-safeguard", on_error="allow", context_turns=0).scan_in_context("", Direction.INPUT, ctx)
    assert r.decision is Decision.BLOCK and r.error is not None and r.details["flagged_categories"] == ["hate"]


def test_breaker_opens_after_failures_and_resets_on_the_clock(stub: Stub) -> None:
    clock = ManualClock()
    stub.reply = lambda path, body: (500, "down")
    g = judge(stub, "llama-guard", clock, breaker_failures=3, breaker_reset_s=30.0, on_error="flag")
    for _ in range(3):
        assert g.scan("hello", Direction.INPUT).details["error_kind"] == "http_5xx"
    assert g.health()["status"] == "down" and g.health()["breaker"]["state"] == "open"
    r = g.scan("hello", Direction.INPUT)
    assert len(stub.requests) == 3  # open circuit: the judge is not called
    assert r.details["error_kind"] == "circuit_open" and r.decision is Decision.FLAG and r.details["breaker"] == "open"
    clock.advance(29.0)
    assert g.scan("hello", Direction.INPUT).details["error_kind"] == "circuit_open" and len(stub.requests) == 3
    clock.advance(1.0)
    assert g.health()["breaker"]["state"] == "half-open" and g.health()["status"] == "degraded"
    stub.reply = lambda path, body: completion("safe")
    r = g.scan("hello", Direction.INPUT)
    assert r.error is None and r.decision is Decision.ALLOW and len(stub.requests) == 4
    assert g.health()["status"] == "ok" and g.health()["breaker"] == {"state": "closed", "consecutive_failures": 0}


def test_failed_trial_reopens_the_circuit(stub: Stub) -> None:
    clock = ManualClock()
    stub.reply = lambda path, body: (429, "slow down")
    g = judge(stub, "llama-guard", clock, breaker_failures=2, breaker_reset_s=10.0)
    g.scan("a", Direction.INPUT), g.scan("a", Direction.INPUT)
    clock.advance(10.0)
    assert g.scan("a", Direction.INPUT).details["error_kind"] == "rate_limited"  # the trial call, failed
    assert g.health()["breaker"]["state"] == "open" and len(stub.requests) == 3


# --- Cascade -----------------------------------------------------------------------------------------------


def test_cascade_outside_band_keeps_local_decision_without_asking(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("unsafe\nS1")
    g = judge(stub, "llama-guard", cascade={"after": "toxicity", "band": [0.3, 0.7]})
    low = g.scan_in_context("hi", Direction.INPUT, ScanContext(prior=local({"toxicity": 0.05, "hate": 0.1})))
    high = g.scan_in_context(
        "x", Direction.INPUT, ScanContext(prior=local({"toxicity": 0.95, "hate": 0.9}, Decision.BLOCK))
    )
    assert stub.requests == []
    assert low.decision is Decision.ALLOW and high.decision is Decision.BLOCK
    assert low.details["judge"]["asked"] is False and low.details["cascade"]["decided_by"] == "local"


def test_cascade_in_band_asks_and_overrides_local(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("safe")
    g = judge(stub, "llama-guard", cascade={"after": "toxicity", "band": [0.3, 0.7], "categories": None})
    r = g.scan_in_context(
        "hmm", Direction.INPUT, ScanContext(prior=local({"toxicity": 0.2, "harassment": 0.55}, Decision.FLAG))
    )
    assert len(stub.requests) == 1 and r.decision is Decision.ALLOW
    assert r.details["cascade"] == {
        "after": "toxicity",
        "band": [0.3, 0.7],
        "reason": "in band",
        "decided_by": "judge",
        "in_band": {"harassment": 0.55},
        "local_decision": "flag",
        "local_score": 0.2,
        "overrides": "toxicity",
    }


def test_cascade_default_considers_overall_toxicity_only(stub: Stub) -> None:
    g = judge(stub, "llama-guard", cascade={"after": "toxicity"})
    r = g.scan_in_context("hmm", Direction.INPUT, ScanContext(prior=local({"toxicity": 0.2, "harassment": 0.5})))
    assert stub.requests == [] and r.details["cascade"]["band"] == [0.5, 0.65]


def test_cascade_asks_when_local_result_missing_or_failed(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("safe")
    g = judge(stub, "llama-guard", cascade={"after": "toxicity", "band": [0.3, 0.7]})
    assert g.scan("a", Direction.INPUT).details["cascade"]["reason"] == "local result missing"
    failed = {"toxicity": GuardrailResult("toxicity", 0.0, Decision.ALLOW, error="timed out")}
    r = g.scan_in_context("b", Direction.INPUT, ScanContext(prior=failed))
    assert r.details["cascade"]["reason"] == "local guardrail failed" and len(stub.requests) == 2


def test_fifty_turn_conversation_asks_only_about_new_turns(stub: Stub) -> None:
    stub.reply = lambda path, body: chat(
        '{"violation": 1, "category": "harassment"}'
        if "idiot" in body["messages"][1]["content"].splitlines()[-1]
        else '{"violation": 0}'
    )
    g = judge(stub, "gpt-oss-safeguard", cascade={"after": "toxicity", "band": [0.0, 1.0]}, context_turns=1)
    messages: list[dict[str, Any]] = []
    for turn in range(1, 51):
        messages.append({"role": "user", "content": f"turn {turn}: " + ("you idiot" if turn == 30 else "tell me more")})
        before = len(stub.requests)
        r = g.scan_in_context(
            "\n".join(m["content"] for m in messages if m["role"] == "user"),
            Direction.INPUT,
            ScanContext(messages=list(messages), prior=local({"toxicity": 0.5})),
        )
        assert len(stub.requests) - before == 1, f"turn {turn}: only the new turn goes to the judge"
        assert r.details["judge"]["cache_hits"] == turn - 1 and r.details["judge"]["units"] == turn
        assert r.decision is (Decision.BLOCK if turn >= 30 else Decision.ALLOW), turn
        messages.append({"role": "assistant", "content": f"answer {turn}"})
    assert len(stub.requests) == 50 and g.health()["cache"]["hits"] == sum(range(50))


def test_cache_hit_for_same_text_and_key_includes_model(stub: Stub) -> None:
    stub.reply = lambda path, body: completion("safe")
    g = judge(stub, "llama-guard")
    g.scan("same", Direction.INPUT)
    r = g.scan("same", Direction.INPUT)
    assert len(stub.requests) == 1 and r.details["judge"]["cache_hits"] == 1 and r.details["judge"]["calls"] == 0
    fingerprint, model, digest = g._key(Unit((Turn("user", "same"),)))
    assert (fingerprint, model) == ("llama-guard:completions:3", "guard") and len(digest) == 64


# --- Configuration and helpers ------------------------------------------------------------------------------


def test_api_key_comes_from_environment(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    stub.reply = lambda path, body: completion("safe")
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "sk-test-123")
    judge(stub, "llama-guard", api_key_env="JUDGE_KEY_FOR_TEST").scan("hi", Direction.INPUT)
    assert stub.requests[0][2]["authorization"] == "Bearer sk-test-123"
    monkeypatch.delenv("JUDGE_KEY_FOR_TEST")
    with pytest.raises(ValueError, match="JUDGE_KEY_FOR_TEST"):
        judge(stub, "llama-guard", api_key_env="JUDGE_KEY_FOR_TEST")


@pytest.mark.parametrize(
    "bad",
    [
        {"api_key": "sk-inline"},
        {"cascade": {"after": "t", "band": [0.8, 0.2]}},
        {"format": "guardian"},
        {"on_error": "redact"},
        {"policy": "x"},
    ],
)
def test_config_rejects_bad_entries(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LLMJudgeConfig(**{"base_url": "http://j/v1", "model": "m", "format": "llama-guard", **bad})


def test_registered_and_declares_context() -> None:
    cls = guardrail_class("llm_judge")
    assert cls is LLMJudgeGuardrail and cls.needs_context and not cls.streaming
