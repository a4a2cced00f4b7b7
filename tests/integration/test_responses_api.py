"""The Responses API through the official ``openai`` SDK, against the ``openai`` backend on a recording stub:
create, streamed, ``previous_response_id``, a function-tool round trip, stored responses, refused fields."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.agent_fixtures import STUB_MODEL, TOOLS

TOOL = {"type": "function", **TOOLS[0]["function"]}  # the Responses API's flat function-tool shape

openai = pytest.importorskip("openai")


def test_create_and_get(sdk, stub_state):
    response = sdk.responses.create(
        model=STUB_MODEL, input="Tell me about lighthouses.", instructions="Be brief.", max_output_tokens=30
    )
    assert response.status == "completed" and "Lighthouses" in response.output_text
    sent = stub_state["bodies"][-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about lighthouses."},
    ]
    assert sent["max_tokens"] == 30
    assert response.model_extra["greenlist"]["decision"] == "allow"
    again = sdk.responses.retrieve(response.id)
    assert again.id == response.id and again.output_text == response.output_text


def test_previous_response_id_carries_the_conversation(sdk, stub_state):
    first = sdk.responses.create(model=STUB_MODEL, input="My name is Ana.")
    sdk.responses.create(model=STUB_MODEL, input="What is my name?", previous_response_id=first.id)
    sent = stub_state["bodies"][-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "My name is Ana." and sent[2]["content"] == "What is my name?"


def test_function_tool_round_trip(sdk, stub_state):
    first = sdk.responses.create(model=STUB_MODEL, input="Weather in Paris?", tools=[TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    assert stub_state["bodies"][-1]["tools"][0]["function"]["name"] == "get_weather"
    second = sdk.responses.create(
        model=STUB_MODEL,
        previous_response_id=first.id,
        tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}],
    )
    assert "sunny" in second.output_text
    sent = stub_state["bodies"][-1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == calls[0].call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "sunny, 21 C"}


def test_streamed_text_and_function_call(sdk, stub_state):
    with sdk.responses.stream(model=STUB_MODEL, input="Tell me about lighthouses.") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "Lighthouses" in final.output_text
    events = list(sdk.responses.create(model=STUB_MODEL, input="Weather?", tools=[TOOL], stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(deltas) == {"city": "Paris"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output[0].type == "function_call" and completed.model_extra["greenlist"]["decision"] == "allow"
    assert sdk.responses.retrieve(completed.id).output[0].call_id == "call_1"


def test_unknown_and_unsupported(agent_gateway):
    resp = httpx.get(f"{agent_gateway.url}/v1/responses/resp_{'0' * 32}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "response_not_found"
    resp = httpx.post(
        f"{agent_gateway.url}/v1/responses",
        json={"model": STUB_MODEL, "input": "hi", "tools": [{"type": "web_search"}]},
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "tools[0].type"
    resp = httpx.post(
        f"{agent_gateway.url}/v1/responses", json={"model": STUB_MODEL, "input": "hi", "background": True}
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "background"


def test_store_false_is_not_kept(sdk):
    response = sdk.responses.create(model=STUB_MODEL, input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
