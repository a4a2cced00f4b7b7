"""``upstream_watermark: vllm-plugin``: the gateway names the active key id to the upstream in ``vllm_xargs``
and reports ``watermark.applied`` only when the returned text verifies with that key (issue 20).

The stub upstream plays a vLLM server: in ``plugin`` mode it answers text green under the key it was named
(what the plugin with a large δ produces), in ``plain`` mode it ignores the argument.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.settings import Settings
from gateway.state import Gateway
from tests.conftest import ServerThread
from tests.watermark_fixtures import green_text

HUMAN = (
    "The harbour was quiet that evening, and the fishermen mended their nets while the gulls "
    "circled over the boats, calling to one another above the grey water of the bay."
)


def key_text(gw: Gateway, key_id: str) -> str:
    """Text green under key ``key_id`` (the plugin's output as δ grows)."""
    key = next(k for k in gw.keyring.keys if k.key_id == key_id)
    return green_text(
        key.scheme(gw.settings.watermark_gamma, gw.settings.watermark_seeding_scheme), gw.verifier.tokenizer
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    app = FastAPI()
    app.state.seen = []
    app.state.mode = "plugin"
    app.state.gw = None

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        app.state.seen.append(body)
        key_id = (body.get("vllm_xargs") or {}).get("greenlist_watermark_key_id")
        text = key_text(app.state.gw, key_id) if app.state.mode == "plugin" and key_id else HUMAN
        if not body.get("stream"):
            return {
                "id": "c1",
                "object": "chat.completion",
                "model": "stub-model",
                "usage": {},
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            }

        def events() -> Iterator[str]:
            for word in text.split(" "):
                chunk = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "model": "stub-model",
                    "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            yield 'data: {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with ServerThread(app) as srv:
        srv.app_state = app.state  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def client(home, upstream) -> Iterator[TestClient]:
    settings = Settings(
        backend="openai",
        upstream_base_url=f"{upstream.url}/v1",
        upstream_model="stub-model",
        upstream_watermark="vllm-plugin",
        audit_enabled=False,
    )
    gw = Gateway.start(settings)
    upstream.app_state.gw = gw
    with TestClient(create_app(settings, gateway=gw)) as c:
        yield c


def _chat(client: TestClient, stream: bool = False) -> dict[str, Any]:
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "Tell me a story."}], "stream": stream}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    if not stream:
        return dict(r.json()["greenlist"])
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    return dict(chunks[-1]["greenlist"])  # the greenlist object rides on the last chunk


def test_applied_only_when_the_upstream_text_verifies(client, upstream) -> None:
    active = client.get("/v1/watermark/keys").json()["active_watermark_key"]
    upstream.app_state.mode = "plugin"
    for stream in (False, True):
        mark = _chat(client, stream)["watermark"]
        assert mark["applied"] is True and mark["key_id"] == active, mark
    sent = upstream.app_state.seen[-1]
    assert sent["vllm_xargs"] == {"greenlist_watermark_key_id": active}  # the key id only, never the key
    upstream.app_state.mode = "plain"  # e.g. a vLLM server without the plugin, or a row it could not watermark
    mark = _chat(client)["watermark"]
    assert mark["applied"] is False and mark["key_id"] is None
    assert "did not verify" in mark["reason"] and active in mark["reason"]
