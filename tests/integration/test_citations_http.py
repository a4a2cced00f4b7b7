"""End to end: an upstream's answer with one real and one fabricated citation comes back annotated."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from gateway.cli import app as cli
from tests.conftest import ServerThread, shared_path
from tests.guardrails.test_citations import _apa

MODEL = "stub-model"
FAKE_TITLE = "Quantum Annealing of Sparse Retrieval Graphs for Multilingual Podcast Summaries"


@pytest.fixture(scope="module")
def record():
    with shared_path("citations", "ir_anthology.jsonl").open() as fh:
        rows = [json.loads(next(fh)) for _ in range(300)]
    return next(r for r in rows if r["year"] and len(r["authors"]) >= 2 and len(r["title"].split()) >= 6), rows


@pytest.fixture(scope="module")
def answer(record):
    rec, _ = record
    return (
        "Prior work studied this [1], but a later study disagreed [2].\n\nReferences:\n"
        f"1. {_apa(rec)}\n"
        f"2. Kearns, M., & Roth, A. (2019). {FAKE_TITLE}. NeurIPS.\n"
    )


@pytest.fixture(scope="module")
def gateway_url(record, answer, tmp_path_factory, home):
    from gateway.api.app import create_app
    from gateway.settings import Settings
    from gateway.state import Gateway

    _, rows = record
    db_home = tmp_path_factory.mktemp("citations-home")
    data = db_home / "slice.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    res = CliRunner().invoke(
        cli, ["citations", "load", str(data), "--name", "ir", "--home", str(db_home), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    policy = db_home / "factual.yaml"
    policy.write_text(f"name: factual\noutput:\n  - type: citations\n    home: {db_home}\n    action: annotate\n")

    stub = FastAPI()

    @stub.post("/v1/chat/completions")
    async def chat():
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 60, "total_tokens": 65},
        }

    with ServerThread(stub) as upstream:
        settings = Settings(
            backend="openai", upstream_base_url=f"{upstream.url}/v1", upstream_model=MODEL, policy=policy
        )
        with ServerThread(create_app(settings, gateway=Gateway.start(settings))) as srv:
            yield srv.url


def test_real_and_fabricated_citation_annotated(gateway_url, record, answer):
    rec, _ = record
    resp = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        timeout=60,
        json={"model": MODEL, "messages": [{"role": "user", "content": "What does the literature say?"}]},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == answer  # annotate does not change the text
    result = body["greenlist"]["output"]["guardrails"][0]
    assert result["name"] == "citations"
    cites = result["details"]["citations"]
    verdicts = {c["verdict"] for c in cites}
    assert {"verified", "not_found"} <= verdicts
    real = next(c for c in cites if c["verdict"] == "verified")
    assert real["match"]["title"] == rec["title"]
    assert answer[real["span"][0] : real["span"][1]] == real["text"]
    fake = next(c for c in cites if c["verdict"] == "not_found")
    assert FAKE_TITLE in answer[fake["span"][0] : fake["span"][1]] or "Kearns" in fake["text"]
    assert body["greenlist"]["decision"] == "allow"


def test_database_loaded_after_start_is_used(record, tmp_path):
    """The default policy's citation check picks up `greenlist citations load` without a restart."""
    from guardrails import Direction
    from guardrails.citations import CitationGuardrail, CitationGuardrailConfig

    rec, rows = record
    guard = CitationGuardrail(CitationGuardrailConfig(home=str(tmp_path)))  # nothing loaded yet
    text = f'As shown in "{rec["title"]}" ({rec["year"]}), tags matter.'
    assert guard.scan(text, Direction.OUTPUT).details["databases"] is None
    data = tmp_path / "slice.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    res = CliRunner().invoke(
        cli, ["citations", "load", str(data), "--name", "late", "--home", str(tmp_path), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    guard.refresh(interval_s=0)
    details = guard.scan(text, Direction.OUTPUT).details
    assert details["databases"] and any(c["verdict"] == "verified" for c in details["citations"]), details
