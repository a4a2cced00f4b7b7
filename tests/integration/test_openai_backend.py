"""The ``openai`` backend: a second Greenlist (and a faulty stub) as the upstream, on loopback."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.conftest import ServerThread

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def proxy(server, home):
    """A Greenlist whose backend forwards to the session's local-model Greenlist."""
    from gateway.api.app import create_app
    from gateway.settings import Settings
    from gateway.state import Gateway

    settings = Settings(backend="openai", upstream_base_url=f"{server.url}/v1", upstream_model=MODEL)
    gw = Gateway.start(settings)
    with ServerThread(create_app(settings, gateway=gw)) as srv:
        yield srv


def test_forwarded_chat_is_guarded_not_watermarked(proxy):
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        timeout=120,
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Name three fruits."}],
            "max_tokens": 24,
            "temperature": 0,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] > 0
    gl = body["greenlist"]
    assert gl["watermark"] == {"applied": False, "key_id": None, "reason": "upstream backend output is not watermarked"}
    assert gl["output"]["guardrails"][0]["name"] == "toxicity"


def test_forwarded_stream(proxy):
    with httpx.stream(
        "POST",
        f"{proxy.url}/v1/chat/completions",
        timeout=120,
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16,
            "stream": True,
        },
    ) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events).strip()


def test_toxic_prompt_blocked(proxy):
    """The default policy checks prompts during the upstream call (input.mode during_call): the answer is dropped."""
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        timeout=60,
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "You are a worthless stupid idiot and I hate you."}],
        },
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "content_filter"


@pytest.fixture(scope="module")
def broken_upstream():
    stub = FastAPI()

    @stub.post("/v1/chat/completions")
    async def fail():
        return JSONResponse({"error": {"message": "model overloaded", "type": "server_error"}}, status_code=500)

    with ServerThread(stub) as srv:
        yield srv


def test_upstream_500_maps_to_502(broken_upstream, home):
    from fastapi.testclient import TestClient

    from gateway.api.app import create_app
    from gateway.settings import Settings
    from gateway.state import Gateway

    # no retries and a tolerant circuit breaker: this test is about mapping the upstream's 500, not failing fast
    settings = Settings(
        backend="openai",
        upstream_base_url=f"{broken_upstream.url}/v1",
        upstream_model=MODEL,
        upstream_retries=0,
        upstream_breaker_failures=10,
    )
    with TestClient(create_app(settings, gateway=Gateway.start(settings))) as client:
        for stream in (False, True):
            resp = client.post(
                "/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
            )
            assert resp.status_code == 502
            err = resp.json()["error"]
            assert err["code"] == "upstream_error" and "model overloaded" in err["message"]
