"""``input.mode: during_call``: the upstream call overlaps the input guardrails and is dropped when they object.

A stub upstream records what it receives and sets an event on each request; the test guardrail waits for that
event inside its scan, so "the upstream was called while the prompt was being checked" is observed, not timed.
"""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from guardrails import Direction, Guardrail, GuardrailConfig, GuardrailResult
from tests.conftest import ServerThread

MODEL = "stub-model"
ANSWER = "Lighthouses guide ships at night."
SEEN = threading.Event()  # set by the stub upstream when a request arrives
RECEIVED: list[dict[str, Any]] = []


class WaitConfig(GuardrailConfig):
    """Config of the test guardrail: what it decides once the upstream was called."""

    outcome: str = "allow"  # allow | block | redact
    wait_s: float = 5.0


class WaitsForUpstream(Guardrail):
    """Waits (bounded) until the stub upstream got a request, then allows, blocks or redacts "secret"; blocks
    when the upstream was not called during the check."""

    Config: ClassVar = WaitConfig

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        if not SEEN.wait(self.config.wait_s):
            return self.fired(1.0, {"upstream_called": False})
        if self.config.outcome == "redact" and "secret" in text:
            return self.fired(1.0, sanitized_text=text.replace("secret", "[removed]"))
        return self.fired(1.0 if self.config.outcome == "block" else 0.0, {"upstream_called": True})


OUTPUT_STARTED = threading.Event()  # set when an output guardrail begins its scan


class WaitsForOutputCheck(Guardrail):
    """Input guardrail: allows once an output guardrail began scanning; blocks when none did within ``wait_s``."""

    Config: ClassVar = WaitConfig

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        started = OUTPUT_STARTED.wait(self.config.wait_s)
        return self.fired(0.0 if started else 1.0, {"output_check_started": started})


class MarksOutputCheck(Guardrail):
    """Output guardrail: records that it began, allows."""

    Config: ClassVar = WaitConfig

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        OUTPUT_STARTED.set()
        return self.fired(0.0, {"scanned": text})


@pytest.fixture(scope="module")
def upstream():
    stub = FastAPI()

    @stub.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        RECEIVED.append(body)
        SEEN.set()
        meta = {"id": "chatcmpl-stub", "created": 0, "model": MODEL}
        if not body.get("stream"):
            message = {"role": "assistant", "content": ANSWER}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
            return JSONResponse({**meta, "object": "chat.completion", "choices": [choice], "usage": usage})

        def events() -> Any:
            for piece, finish in ((ANSWER[:12], None), (ANSWER[12:], None), ("", "stop")):
                delta = {"content": piece} if piece else {}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                yield f"data: {json.dumps({**meta, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with ServerThread(stub) as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(upstream, home, tmp_path_factory):
    from gateway.api.app import create_app
    from gateway.settings import Settings
    from gateway.state import Gateway

    policy = tmp_path_factory.mktemp("during_call") / "during.yaml"
    policy.write_text(
        "name: during\ninput:\n  mode: during_call\n  guardrails:\n    - type: toxicity\noutput: []\n",
        encoding="utf-8",
    )
    settings = Settings(backend="openai", upstream_base_url=f"{upstream.url}/v1", upstream_model=MODEL, policy=policy)
    gw = Gateway.start(settings)
    with ServerThread(create_app(settings, gateway=gw)) as srv:
        yield gw, srv


def _use(monkeypatch, gw, mode: str, **config: Any) -> None:
    """Make the live policy run only the waiting guardrail on input, in ``mode``."""
    pipeline = getattr(getattr(gw, "store", None), "default", None) or gw.serving.pipeline
    guardrail = WaitsForUpstream(WaitConfig(type="waits", name="waits", **config))
    monkeypatch.setitem(pipeline.guardrails, Direction.INPUT, [guardrail])
    monkeypatch.setattr(pipeline.policy, "input_mode", mode)
    # input verdicts are cached by text and guardrail id(), and a new guardrail may reuse a freed one's id()
    monkeypatch.setattr(pipeline, "_cache", type(pipeline._cache)())
    SEEN.clear()
    RECEIVED.clear()


def _post(srv, content: str, stream: bool = False) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": stream}
    return httpx.post(f"{srv.url}/v1/chat/completions", json=body, timeout=30)


def test_policy_file_sets_the_mode(gateway):
    gw, _ = gateway
    pipeline = getattr(getattr(gw, "store", None), "default", None) or gw.serving.pipeline
    assert pipeline.policy.input_mode == "during_call"


def test_pre_call_checks_before_the_upstream_sees_the_prompt(gateway, monkeypatch):
    gw, srv = gateway
    _use(monkeypatch, gw, "pre_call", wait_s=0.3)
    r = _post(srv, "Tell me about lighthouses.")
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
    assert r.json()["greenlist"]["input"]["guardrails"][0]["details"] == {"upstream_called": False}
    assert RECEIVED == []


def test_during_call_overlaps_the_upstream_call(gateway, monkeypatch):
    gw, srv = gateway
    _use(monkeypatch, gw, "during_call")
    r = _post(srv, "Tell me about lighthouses.")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == ANSWER
    assert r.json()["greenlist"]["input"]["guardrails"][0]["details"] == {"upstream_called": True}
    assert [m["content"] for m in RECEIVED[0]["messages"]] == ["Tell me about lighthouses."]
    assert len(RECEIVED) == 1


def test_during_call_block_drops_the_answer(gateway, monkeypatch):
    gw, srv = gateway
    _use(monkeypatch, gw, "during_call", outcome="block")
    for stream in (False, True):
        SEEN.clear()
        r = _post(srv, f"Tell me about lighthouses (stream={stream}).", stream=stream)  # not a cached verdict
        assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
        assert ANSWER not in r.text
    assert len(RECEIVED) == 2  # the upstream saw both prompts: the documented cost of during_call


def test_during_call_redaction_sends_the_redacted_prompt(gateway, monkeypatch):
    gw, srv = gateway
    _use(monkeypatch, gw, "during_call", outcome="redact", action="redact")
    r = _post(srv, "My secret is that I love lighthouses.")
    assert r.status_code == 200, r.text
    assert [b["messages"][0]["content"] for b in RECEIVED] == [
        "My secret is that I love lighthouses.",  # the early call, cancelled or dropped
        "My [removed] is that I love lighthouses.",  # the one whose answer the client gets
    ]
    assert r.json()["greenlist"]["input"]["decision"] == "redact"


def test_during_call_stream(gateway, monkeypatch):
    gw, srv = gateway
    _use(monkeypatch, gw, "during_call")
    r = _post(srv, "Tell me about lighthouses.", stream=True)
    assert r.status_code == 200, r.text
    events = [json.loads(e[6:]) for e in r.text.splitlines() if e.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == ANSWER
    assert events[-1]["greenlist"]["input"]["guardrails"][0]["details"] == {"upstream_called": True}
    assert len(RECEIVED) == 1


def test_during_call_checks_the_answer_beside_the_prompt(gateway, monkeypatch):
    """The early call's answer is checked as soon as it arrives, while the prompt check still runs: the input
    guardrail waits for the output guardrail to begin (a check that waited for the prompt's verdict would block)."""
    gw, srv = gateway
    _use(monkeypatch, gw, "during_call")
    pipeline = getattr(getattr(gw, "store", None), "default", None) or gw.serving.pipeline
    monkeypatch.setitem(pipeline.guardrails, Direction.INPUT, [WaitsForOutputCheck(WaitConfig(type="w", name="w"))])
    monkeypatch.setitem(pipeline.guardrails, Direction.OUTPUT, [MarksOutputCheck(WaitConfig(type="m", name="m"))])
    OUTPUT_STARTED.clear()
    r = _post(srv, "Tell me about lighthouses before the prompt check ends.")
    assert r.status_code == 200, r.text
    greenlist = r.json()["greenlist"]
    assert greenlist["input"]["guardrails"][0]["details"] == {"output_check_started": True}
    assert greenlist["output"]["guardrails"][0]["details"] == {"scanned": ANSWER}
    assert r.json()["choices"][0]["message"]["content"] == ANSWER
