"""benchmarks/bench_overhead.py: the stub upstream, the generated policies and the statistics (no server started)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from benchmarks import bench_overhead as bench
from gateway.policy.schema import load_policy

ROOT = Path(__file__).resolve().parents[2]


def _call_stub(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    sent: list[dict] = []
    payload = json.dumps(body or {}).encode()

    async def receive() -> dict:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path}
    asyncio.run(bench.stub_app({"known prompt": "its answer"})(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_stub_answers_each_prompt_with_its_answer():
    status, data = _call_stub("POST", "/v1/chat/completions", {"model": "m", "messages": []})
    assert status == 200
    assert data["choices"][0]["message"]["content"] == bench.ANSWER
    assert len(bench.ANSWER.split()) == 150
    assert all(180 <= len(p) <= 220 for p in bench.PROMPTS)
    known = {"model": "m", "messages": [{"role": "user", "content": "known prompt"}]}
    assert _call_stub("POST", "/v1/chat/completions", known)[1]["choices"][0]["message"]["content"] == "its answer"
    assert _call_stub("POST", "/v1/chat/completions", {"stream": True})[0] == 400


def test_fresh_texts_are_distinct_150_word_answers_and_200_character_prompts():
    if not (ROOT.parent / "shared" / "data" / "toxicity_extra" / "ag_news_long.csv").exists():
        import pytest

        pytest.skip("needs ../shared/data (ag_news_long, british_novels)")
    prompts, answers = bench.fresh_texts(120)
    assert len(set(prompts)) == len(set(answers)) == 120
    assert all(150 <= len(a.split()) <= 260 for a in answers)
    assert all(100 <= len(p) <= 200 for p in prompts)


def test_generated_policies_are_valid(tmp_path):
    none = tmp_path / "none.yaml"
    none.write_text(bench.NO_GUARDRAIL_POLICY)
    loaded = load_policy(none)
    assert loaded.policy.input == [] and loaded.policy.output == []
    v7 = tmp_path / "default.yaml"
    v7.write_text(bench.v7_policy((ROOT / "policies" / "default.yaml").read_text()))
    entries = [e for e in [*load_policy(v7).policy.input, *load_policy(v7).policy.output] if e.type == "toxicity"]
    assert len(entries) == 2 and all(e.model == "v7" for e in entries)


def test_summary_pairs_rounds_and_computes_the_litellm_ratio():
    direct = bench.Target("direct", "", "", "", latencies=[1.0, 2.0, 1.0, 1.0])
    litellm = bench.Target("litellm", "", "", "", latencies=[11.0, 12.0, 11.0, 11.0])
    default = bench.Target("greenlist-default", "", "", "", latencies=[16.0, 17.0, None, 16.0])
    for t in (litellm, default):
        t.added = [x - d for x, d in zip(t.latencies, direct.latencies, strict=True) if x is not None]
    summary = bench.summarize(direct, [litellm, default])
    rows = {r["target"]: r for r in summary["rows"]}
    assert rows["litellm"]["added_p50"] == 10.0 and rows["greenlist-default"]["added_p50"] == 15.0
    assert rows["greenlist-default"]["n"] == 3
    assert summary["ratio_default_vs_litellm"] == 1.5
    assert "| greenlist-default | 3 |" in bench.table(summary)
