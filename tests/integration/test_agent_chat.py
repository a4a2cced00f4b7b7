"""Agent-era chat completions through the ``openai`` backend (a recording stub upstream): no field dropped,
tool calls forwarded and guarded, input turns checked by role and redacted before the model sees them."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.agent_fixtures import PROTECTED, STUB_MODEL, TOOLS

TOXIC = "You are a worthless stupid idiot and everyone hates you, you disgusting moron."

# Every documented chat-completions request field (platform.openai.com/docs/api-reference/chat/create), with a
# non-default value; the gateway must forward each one unchanged.
EVERY_FIELD = {
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}], "name": "ana"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": "cold"},
    ],
    "audio": {"voice": "alloy", "format": "mp3"},
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "max_completion_tokens": 40,
    "metadata": {"app": "test"},
    "modalities": ["text"],
    "n": 1,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "sunny"},
    "presence_penalty": -0.5,
    "prompt_cache_key": "k1",
    "reasoning_effort": "low",
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "w",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"t": {"type": "string"}},
                "required": ["t"],
                "additionalProperties": False,
            },
        },
    },
    "safety_identifier": "user-123",
    "seed": 42,
    "service_tier": "auto",
    "stop": ["\n\n"],
    "store": True,
    "temperature": 0.3,
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "tools": TOOLS,
    "top_logprobs": 3,
    "top_p": 0.9,
    "user": "legacy-user",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
    "a_field_openai_adds_next_year": {"nested": [1, 2]},
}


def post(gw, body: dict, **kw) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json={"model": STUB_MODEL, **body}, timeout=120, **kw)


def test_every_documented_field_arrives_unchanged(agent_gateway, stub_state):
    resp = post(agent_gateway, {**EVERY_FIELD, "greenlist": {"policy": "default"}})
    assert resp.status_code == 200, resp.text
    received = stub_state["bodies"][-1]
    for name, value in EVERY_FIELD.items():
        assert received.get(name) == value, name
    assert "greenlist" not in received and received["stream"] is False


def test_null_temperature_and_top_p_mean_default(agent_gateway, stub_state):
    resp = post(agent_gateway, {"messages": [{"role": "user", "content": "Hi"}], "temperature": None, "top_p": None})
    assert resp.status_code == 200, resp.text
    assert stub_state["bodies"][-1]["temperature"] is None


def test_tool_call_round_trip_passes_through(agent_gateway, stub_state):
    first = post(agent_gateway, {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": TOOLS})
    assert first.status_code == 200, first.text
    choice = first.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    checked = first.json()["greenlist"]["output"]["tool_calls"]
    assert checked[0]["id"] == "call_1" and checked[0]["name"] == "get_weather" and checked[0]["decision"] == "allow"
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
    ]
    second = post(agent_gateway, {"messages": history, "tools": TOOLS})
    assert second.status_code == 200, second.text
    sent = stub_state["bodies"][-1]["messages"]
    assert sent[1]["tool_calls"] == [call] and sent[2]["tool_call_id"] == "call_1"
    assert "sunny" in second.json()["choices"][0]["message"]["content"]
    roles = [(m["index"], m["role"]) for m in second.json()["greenlist"]["input"]["messages"]]
    assert roles == [(0, "user"), (2, "tool")]  # default policy: user and tool turns


def test_streamed_tool_call_deltas_pass_through(agent_gateway, stub_state):
    with httpx.stream(
        "POST",
        f"{agent_gateway.url}/v1/chat/completions",
        timeout=120,
        json={
            "model": STUB_MODEL,
            "messages": [{"role": "user", "content": "Weather?"}],
            "tools": TOOLS,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    pieces = [d["tool_calls"][0] for e in events for c in e["choices"] if (d := c["delta"]).get("tool_calls")]
    assert pieces[0]["id"] == "call_1" and pieces[0]["function"]["name"] == "get_weather"
    assert "".join(p["function"]["arguments"] for p in pieces) == '{"city": "Paris"}'
    assert [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]] == ["tool_calls"]
    assert "greenlist" in events[-1] and events[-1]["usage"]["total_tokens"] == 12  # greenlist on the last chunk
    assert all("greenlist" not in e for e in events[:-1])


@pytest.mark.parametrize("stream", [False, True])
def test_toxic_tool_call_arguments_are_blocked(agent_gateway, stub_state, stream):
    stub_state["script"].append(
        {
            "content": None,
            "finish_reason": "tool_calls",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "send_email", "arguments": json.dumps({"to": "bob", "body": TOXIC})},
                }
            ],
        }
    )
    body = {"messages": [{"role": "user", "content": "Email Bob."}], "tools": TOOLS, "stream": stream}
    if not stream:
        out = post(agent_gateway, body).json()
        assert out["choices"][0]["finish_reason"] == "content_filter"
        assert "tool_calls" not in out["choices"][0]["message"]
        gl = out["greenlist"]
    else:
        with httpx.stream(
            "POST", f"{agent_gateway.url}/v1/chat/completions", timeout=120, json={"model": STUB_MODEL, **body}
        ) as resp:
            events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
        assert not any(c["delta"].get("tool_calls") for e in events for c in e["choices"])
        assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
        gl = events[-1]["greenlist"]
    assert gl["decision"] == "block"
    assert gl["output"]["tool_calls"][0] | {"guardrails": None} == {
        "index": 0,
        "id": "call_9",
        "name": "send_email",
        "decision": "block",
        "guardrails": None,
    }


def test_tool_result_with_protected_text_is_caught(agent_gateway, stub_state):
    history = [
        {"role": "user", "content": "Read the file."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": PROTECTED},
    ]
    resp = post(agent_gateway, {"messages": history, "greenlist": {"policy": "agent"}})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "content_filter"
    blocked = [m for m in resp.json()["greenlist"]["input"]["messages"] if m["decision"] == "block"]
    assert [(m["index"], m["role"]) for m in blocked] == [(2, "tool")]
    assert stub_state["bodies"] == []  # never reached the model


def test_forged_assistant_turn_checked_when_policy_asks(agent_gateway, stub_state):
    history = [
        {"role": "user", "content": "Continue."},
        {"role": "assistant", "content": TOXIC},
        {"role": "user", "content": "Go on."},
    ]
    default = post(agent_gateway, {"messages": history})
    assert default.status_code == 200  # the default policy checks user and tool turns only
    agent = post(agent_gateway, {"messages": history, "greenlist": {"policy": "agent"}})
    assert agent.status_code == 400 and agent.json()["error"]["code"] == "content_filter"
    roles = {m["index"]: (m["role"], m["decision"]) for m in agent.json()["greenlist"]["input"]["messages"]}
    assert roles[1] == ("assistant", "block")


def test_input_redact_changes_what_the_model_receives(agent_gateway, stub_state):
    prompt = f"Summarise this: {PROTECTED}"
    resp = post(agent_gateway, {"messages": [{"role": "user", "content": prompt}], "greenlist": {"policy": "redactor"}})
    assert resp.status_code == 200, resp.text
    sent = stub_state["bodies"][-1]["messages"][0]["content"]
    assert sent != prompt and "ledger bound with green thread" not in sent and sent.startswith("Summarise this:")
    assert resp.json()["greenlist"]["input"]["decision"] == "redact"


def test_old_turns_are_not_rescored(agent_gateway, stub_state):
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn number {i} about ships."} for i in range(49)
    ] + [{"role": "user", "content": "A new question about tides?"}]
    post(agent_gateway, {"messages": history[:-1], "greenlist": {"policy": "agent"}})
    resp = post(agent_gateway, {"messages": history, "greenlist": {"policy": "agent"}})
    assert resp.status_code == 200, resp.text
    checked = resp.json()["greenlist"]["input"]["messages"]
    assert len(checked) == 50 and [m["index"] for m in checked if not m["cached"]] == [49]
    assert resp.json()["greenlist"]["input"]["scope"]["cached"] == 49
