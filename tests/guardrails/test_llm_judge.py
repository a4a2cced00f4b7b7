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
from guardrails.llm_judge.units import completed_sentences
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
    return {"toxicity": GuardrailResult("toxicity", scores.get("toxicity", 0.0), decision,
                                        details={"categories": scores})}


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


@pytest.mark.parametrize("content, flagged", [('```json\n{"violation": 0, "category": null}\n```', []),
                                              ('{"violation": 1, "category": "spam"}', ["other"])])
def test_json_verdict_fence_and_unknown_category(stub: Stub, content: str, flagged: list[str]) -> None:
    stub.reply = lambda path, body: chat(content)
    r = judge(stub, "gpt-oss-safeguard").scan("buy now", Direction.INPUT)
    assert r.error is None and r.details["flagged_categories"] == flagged


@pytest.mark.parametrize("content", ['{"violation": true, "category": "hate"}', '{"violation": "1", "category": "x"}',
                                     '{"violation": 1}', "violation: 1", '[{"violation": 0}]',
                                     '{"violation": 0} and more', '{"violation": 2, "category": "hate"}'])
def test_json_verdict_malformed_is_an_error(stub: Stub, content: str) -> None:
    stub.reply = lambda path, body: chat(content)
    r = judge(stub, "gpt-oss-safeguard", on_error="allow").scan("x", Direction.INPUT)
    assert r.error is not None and r.details["error_kind"] == "malformed"
    assert r.decision is Decision.ALLOW and r.action == "on_error:allow"  # passes, but recorded as an error


# --- OpenAI moderation -------------------------------------------------------------------------------------

def test_openai_moderation_maps_categories(stub: Stub) -> None:
    stub.reply = lambda path, body: moderation({"hate": False, "harassment/threatening": True},
                                               {"hate": 0.2, "harassment/threatening": 0.93})
    r = judge(stub, "openai-moderation").scan("I know where you live", Direction.INPUT)
    assert stub.requests[0][:2] == ("/v1/moderations", {"model": "guard", "input": "I know where you live"})
    assert r.decision is Decision.BLOCK and r.details["flagged_categories"] == ["harassment"]
    assert r.score == pytest.approx(0.93)


def test_openai_moderation_greenlist_toxicity_only_is_ignored(stub: Stub) -> None:
    stub.reply = lambda path, body: moderation({"toxicity": True, "hate": False}, {"toxicity": 0.6, "hate": 0.1})
    r = judge(stub, "openai-moderation").scan("meh", Direction.INPUT)
    assert r.decision is Decision.ALLOW and r.error is None and r.details["ignored_categories"] == ["toxicity"]


@pytest.mark.parametrize("payload", [{"results": []}, {"results": [{"flagged": "yes", "categories": {},
                                                                    "category_scores": {}}]},
                                     {"results": [{"flagged": False, "categories": {"hate": False},
                                                   "category_scores": {"hate": 7}}]}, "not json"])
def test_openai_moderation_malformed_is_an_error(stub: Stub, payload: Any) -> None:
    stub.reply = lambda path, body: payload
    r = judge(stub, "openai-moderation").scan("x", Direction.INPUT)
    assert r.error is not None and r.details["error_kind"] == "malformed" and r.decision is Decision.BLOCK
