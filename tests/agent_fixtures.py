"""A recording, scriptable OpenAI-compatible upstream for the agent-API tests, and gateways in front of it.

The stub (:func:`make_agent_stub`) records every request body in ``state["bodies"]`` and answers:

* with the next scripted reply from ``state["script"]`` when there is one (``{"content", "tool_calls",
  "finish_reason", "logprobs"}``);
* else, when the last message is a tool result: a final answer that quotes it ("The tool said: ...");
* else, when the request offers tools: a call of the first tool with ``{"city": "Paris"}``;
* else a short plain answer.

Streams send the content word by word and each tool call's arguments in two pieces (OpenAI's delta shape).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

STUB_MODEL = "stub-model"
TOOLS = [  # one chat-completions function tool, as clients send it
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ANSWER = "Lighthouses guide ships safely along the coast at night."
PROTECTED = (
    "The keeper of the northern light wrote every evening in a ledger bound with green thread, noting the "
    "colour of the sea, the ships that passed the headland, the weight of oil burned in the great lamp and the "
    "names of the gulls that nested under the gallery rail, until the ledger filled and a second one was begun."
)


def _reply(body: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    if state["script"]:
        return dict(state["script"].pop(0))
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        return {"content": f"The tool said: {messages[-1].get('content')}", "finish_reason": "stop"}
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        return {
            "content": None,
            "finish_reason": "tool_calls",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}
            ],
        }
    return {"content": ANSWER, "finish_reason": "stop"}


def _logprobs(text: str) -> dict[str, Any]:
    return {
        "content": [
            {"token": w, "logprob": -0.5, "bytes": list(w.encode()), "top_logprobs": []} for w in text.split(" ")
        ],
        "refusal": None,
    }


def _chunks(reply: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield {"role": "assistant", "content": ""}
    for i, word in enumerate((reply.get("content") or "").split(" ") if reply.get("content") else []):
        yield {"content": word if i == 0 else " " + word}
    for index, call in enumerate(reply.get("tool_calls") or []):
        args = call["function"]["arguments"]
        half = len(args) // 2
        yield {
            "tool_calls": [
                {
                    "index": index,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": args[:half]},
                }
            ]
        }
        yield {"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]}


def make_agent_stub() -> FastAPI:
    """The recording stub upstream (see the module docstring)."""
    stub = FastAPI()
    stub.state.data = {"bodies": [], "script": []}
    state = stub.state.data

    @stub.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        state["bodies"].append(body)
        reply = _reply(body, state)
        usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply.get("content")}
            if reply.get("tool_calls"):
                message["tool_calls"] = reply["tool_calls"]
            logprobs = reply.get("logprobs") or (
                _logprobs(reply["content"]) if body.get("logprobs") and reply.get("content") else None
            )
            return {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": 1,
                "model": STUB_MODEL,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": reply["finish_reason"], "logprobs": logprobs}
                ],
                "usage": usage,
            }

        def event(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": STUB_MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n"

        async def events() -> Any:
            for delta in _chunks(reply):
                yield event(delta)
            yield event({}, reply["finish_reason"])
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({'id': 'chatcmpl-stub', 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @stub.post("/v1/completions")
    async def text(request: Request) -> Any:
        body = await request.json()
        state["bodies"].append(body)
        return {
            "id": "cmpl-stub",
            "object": "text_completion",
            "created": 1,
            "model": STUB_MODEL,
            "choices": [{"index": 0, "text": ANSWER, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7},
        }

    return stub


AGENT_POLICY = """name: agent
input:
  roles: [user, tool, assistant]
  guardrails: [{{type: toxicity, timeout_s: 60}},
               {{type: protected_content, home: "{home}", action: {protected_action}, apply_to_prompts: true,
                 timeout_s: 60}}]
output: [{{type: toxicity, timeout_s: 60}}, {{type: protected_content, home: "{home}", action: block, timeout_s: 60}}]
"""


def write_policies(folder: Path, corpus_home: Path) -> Path:
    """A policy folder: ``default`` (toxicity on user and tool turns), ``agent`` (also assistant turns, protected
    content blocked) and ``redactor`` (protected content redacted on input)."""
    from guardrails.protected.index import Corpus, CorpusParams

    corpus = Corpus.create("ledger", CorpusParams.default("prose"), home=corpus_home)
    corpus.add_texts([("ledger.txt", PROTECTED, None)])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yaml").write_text(
        "name: default\ninput:\n  - type: toxicity\n    timeout_s: 60\noutput:\n  - type: toxicity\n    timeout_s: 60\n"
    )
    (folder / "agent.yaml").write_text(AGENT_POLICY.format(home=corpus_home, protected_action="block"))
    (folder / "redactor.yaml").write_text(
        AGENT_POLICY.format(home=corpus_home, protected_action="redact").replace("name: agent", "name: redactor")
    )
    return folder / "default.yaml"


@pytest.fixture(scope="session")
def agent_stub() -> Iterator[Any]:
    """The recording stub upstream on loopback; ``agent_stub.state`` holds ``bodies`` and ``script``."""
    from tests.reliability_fixtures import serve_stub

    yield from serve_stub(make_agent_stub())


@pytest.fixture(scope="session")
def agent_gateway(home, agent_stub, tmp_path_factory) -> Iterator[Any]:
    """A gateway (``openai`` backend on the stub, the policies of :func:`write_policies`) served on loopback."""
    from gateway.api.app import create_app
    from gateway.settings import Settings
    from gateway.state import Gateway
    from tests.conftest import ServerThread

    root = tmp_path_factory.mktemp("agent-policies")
    policy = write_policies(root / "policies", root / "corpora")
    settings = Settings(
        backend="openai",
        upstream_base_url=f"{agent_stub.url}/v1",
        upstream_model=STUB_MODEL,
        upstream_retry_backoff_s=0.01,
        policy=policy,
        policies_dir=policy.parent,
        audit_enabled=False,
    )
    gw = Gateway.start(settings)
    with ServerThread(create_app(settings, gateway=gw)) as srv:
        srv.gateway = gw  # type: ignore[attr-defined]
        yield srv


@pytest.fixture()
def stub_state(agent_stub) -> dict[str, Any]:
    """The stub's state, cleared for this test."""
    agent_stub.state["bodies"].clear()
    agent_stub.state["script"].clear()
    return agent_stub.state


@pytest.fixture()
def sdk(agent_gateway: Any) -> Any:
    """The official openai SDK pointed at the agent gateway (skips without the package)."""
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{agent_gateway.url}/v1", api_key="unused", max_retries=0)
