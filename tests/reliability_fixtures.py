"""Fixtures for the reliability tests: a scriptable OpenAI-compatible stub upstream and a fast gateway in front of it.

The stub serves ``/{mode}/v1/chat/completions`` and ``/{mode}/v1/completions``:

* ``ok``: a short answer (streamed in a few chunks when asked);
* ``fail500``: HTTP 500 with an OpenAI error body;
* ``slow``: answers after ``SLOW_S`` seconds (read-timeout tests);
* ``drop``: streams two chunks, then breaks the connection;
* ``endless``: streams a chunk every 20 ms until the client leaves
  (``stub.state["closed"]`` counts streams whose client went away);
* ``flaky``: 503 while ``stub.state["fail_next"] > 0`` (decremented), else ``ok``;
* ``switch``: 503 while ``stub.state["down"]``, else ``ok``.

``stub.state["hits"][mode]`` counts requests per mode.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

STUB_MODEL = "stub-model"
SLOW_S = 5.0
ANSWER = "Lighthouses guide ships safely along the coast at night."


def _completion(chat: bool, text: str) -> dict[str, Any]:
    choice = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if chat
        else {"index": 0, "text": text, "finish_reason": "stop"}
    )
    return {
        "id": "stub",
        "object": "chat.completion" if chat else "text_completion",
        "model": STUB_MODEL,
        "choices": [choice],
        "usage": {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15},
    }


def _event(chat: bool, text: str | None, finish: str | None = None) -> str:
    choice = (
        {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
        if chat
        else {"index": 0, "text": text or "", "finish_reason": finish}
    )
    return f"data: {json.dumps({'id': 'stub', 'model': STUB_MODEL, 'choices': [choice]})}\n\n"


def make_stub() -> FastAPI:
    """The stub upstream app (see the module docstring)."""
    stub = FastAPI()
    stub.state.data = {"hits": Counter(), "closed": 0, "fail_next": 0, "down": False}
    state = stub.state.data

    async def handle(mode: str, request: Request, chat: bool) -> Any:
        state["hits"][mode] += 1
        body = await request.json()
        stream = bool(body.get("stream"))
        if mode == "flaky" and state["fail_next"] > 0:
            state["fail_next"] -= 1
            return JSONResponse({"error": {"message": "warming up", "type": "server_error"}}, status_code=503)
        if mode == "switch" and state["down"]:
            return JSONResponse({"error": {"message": "down", "type": "server_error"}}, status_code=503)
        if mode == "fail500":
            return JSONResponse({"error": {"message": "model overloaded", "type": "server_error"}}, status_code=500)
        if mode == "slow":
            await asyncio.sleep(SLOW_S)
        if not stream:
            return _completion(chat, ANSWER)

        async def events():
            if mode == "drop":
                yield _event(chat, "Lighthouses ")
                yield _event(chat, "guide ")
                raise RuntimeError("stub drops the connection mid-stream")
            if mode == "endless":
                try:
                    while True:
                        yield _event(chat, "word ")
                        await asyncio.sleep(0.02)
                finally:
                    state["closed"] += 1
            for word in ANSWER.split(" "):
                yield _event(chat, word + " ")
            yield _event(chat, None, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @stub.post("/{mode}/v1/chat/completions")
    async def chat(mode: str, request: Request) -> Any:
        return await handle(mode, request, True)

    @stub.post("/{mode}/v1/completions")
    async def text(mode: str, request: Request) -> Any:
        return await handle(mode, request, False)

    return stub


def serve_stub(app: FastAPI) -> Iterator[Any]:
    """Serve a stub app on loopback for a fixture; the server's ``state`` is the app's ``state.data``."""
    from tests.conftest import ServerThread

    with ServerThread(app) as srv:
        srv.state = app.state.data  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="session")
def stub_upstream() -> Iterator[Any]:
    """The stub upstream on loopback; ``stub_upstream.state`` is its scriptable state."""
    yield from serve_stub(make_stub())


@pytest.fixture(scope="session")
def fast_gateway(home, stub_upstream):
    """A gateway (default policy, real guardrails and watermark verifier) whose backend is the stub's ``ok`` mode."""
    from gateway.settings import Settings
    from gateway.state import Gateway

    settings = Settings(
        backend="openai",
        upstream_base_url=f"{stub_upstream.url}/ok/v1",
        upstream_model=STUB_MODEL,
        upstream_retry_backoff_s=0.01,
    )
    return Gateway.start(settings)


def gateway_with(
    gw: Any, mode: str | None = None, stub: Any = None, base_url: str | None = None, **settings: Any
) -> Any:
    """A copy of ``gw`` with other settings and, optionally, an OpenAI backend on the stub's ``mode``."""
    from gateway.backends.openai import OpenAIBackend

    new_settings = gw.settings.model_copy(update=settings)
    replaced: dict[str, Any] = {"settings": new_settings}
    if mode is not None or base_url is not None or new_settings.backend == "openai":
        # a fresh backend per app: an httpx pool must not outlive the event loop of the test client that used it
        s = new_settings
        url = base_url or (f"{stub.url}/{mode}/v1" if mode is not None else s.upstream_base_url)
        replaced["backend"] = OpenAIBackend(
            url,
            None,
            STUB_MODEL,
            s.upstream_timeout_s,
            s.upstream_connect_timeout_s,
            s.upstream_retries,
            s.upstream_retry_backoff_s,
            s.upstream_breaker_failures,
            s.upstream_breaker_reset_s,
        )
    return dataclasses.replace(gw, **replaced)


def chat_body(content: str = "Tell me about lighthouses.", **extra: Any) -> dict[str, Any]:
    """A chat completion request body for the stub model."""
    return {"model": STUB_MODEL, "messages": [{"role": "user", "content": content}], **extra}


def assert_openai_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an OpenAI-shaped error with ``status`` (and ``code``); return the error object."""
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err
