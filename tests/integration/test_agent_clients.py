"""Real clients through Greenlist (``openai`` backend on the recording stub): the openai SDK with tools,
``response_format`` and logprobs; an OpenAI Agents SDK agent with one function tool; LangChain
``ChatOpenAI.bind_tools``; the anthropic SDK on ``/v1/messages`` with a tool."""

from __future__ import annotations

import json

import pytest

from tests.agent_fixtures import STUB_MODEL, TOOLS

openai = pytest.importorskip("openai")


def test_openai_sdk_tool_call_then_result_then_answer(sdk, stub_state):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model=STUB_MODEL, messages=messages, tools=TOOLS, tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    final = sdk.chat.completions.create(model=STUB_MODEL, messages=messages, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop" and "sunny" in final.choices[0].message.content
    assert stub_state["bodies"][-1]["messages"][2]["tool_call_id"] == call.id


def test_openai_sdk_streamed_tool_call_reassembled(sdk, stub_state):
    stream = sdk.chat.completions.create(
        model=STUB_MODEL, messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, stream=True
    )
    arguments, name = "", None
    for chunk in stream:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or []:
                name = name or piece.function.name
                arguments += piece.function.arguments or ""
    assert name == "get_weather" and json.loads(arguments) == {"city": "Paris"}


def test_openai_sdk_json_schema_and_logprobs(sdk, stub_state):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
        "required": ["city", "temp"],
        "additionalProperties": False,
    }
    stub_state["script"].append({"content": json.dumps({"city": "Paris", "temp": 21}), "finish_reason": "stop"})
    out = sdk.chat.completions.create(
        model=STUB_MODEL,
        messages=[{"role": "user", "content": "Weather as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": schema}},
    )
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(out.choices[0].message.content), schema)
    assert stub_state["bodies"][-1]["response_format"]["json_schema"]["schema"] == schema
    out = sdk.chat.completions.create(
        model=STUB_MODEL, messages=[{"role": "user", "content": "Hi"}], logprobs=True, top_logprobs=2
    )
    tokens = out.choices[0].logprobs.content
    assert tokens and tokens[0].logprob == -0.5 and stub_state["bodies"][-1]["top_logprobs"] == 2


def test_openai_agents_sdk_agent_with_function_tool(agent_gateway, stub_state):
    agents = pytest.importorskip("agents")
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    model = agents.OpenAIResponsesModel(
        model=STUB_MODEL,
        openai_client=openai.AsyncOpenAI(base_url=f"{agent_gateway.url}/v1", api_key="unused", max_retries=0),
    )
    agent = agents.Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather], model=model)
    result = agents.Runner.run_sync(agent, "Weather in Paris?", run_config=agents.RunConfig(tracing_disabled=True))
    assert calls == ["Paris"] and "sunny in Paris" in result.final_output


def test_langchain_bind_tools(agent_gateway, stub_state):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model=STUB_MODEL, base_url=f"{agent_gateway.url}/v1", api_key="unused", max_retries=0
    )
    message = llm.bind_tools(TOOLS).invoke("Weather in Paris?")
    assert message.tool_calls[0]["name"] == "get_weather" and message.tool_calls[0]["args"] == {"city": "Paris"}
    assert stub_state["bodies"][-1]["tools"] == TOOLS


def test_anthropic_sdk_messages_with_tool(agent_gateway, stub_state):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=agent_gateway.url, api_key="unused", max_retries=0)
    tool = {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(
        model=STUB_MODEL, max_tokens=64, system="Use tools.", messages=messages, tools=[tool]
    )
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    with client.messages.stream(model=STUB_MODEL, max_tokens=64, messages=messages, tools=[tool]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "sunny" in text and final.stop_reason == "end_turn"
    sent = stub_state["bodies"][-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == use.id and sent[2] == {
        "role": "tool",
        "tool_call_id": use.id,
        "content": "sunny",
    }


@pytest.mark.parametrize(
    "body, words",
    [
        ({"top_k": 5}, "top_k"),  # a field the translation cannot carry
        ({"max_tokens": 0}, "max_tokens"),  # schema validation
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "image"),
        ({"greenlist": {"policy": "no-such-policy"}}, "no-such-policy"),
    ],
)
def test_anthropic_sdk_gets_anthropic_shaped_errors(agent_gateway, body, words):
    """/v1/messages answers errors in Anthropic's shape, which the anthropic SDK turns into its typed errors."""
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=agent_gateway.url, api_key="unused", max_retries=0)
    request = {"model": STUB_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
    request.update({k: v for k, v in body.items() if k in ("max_tokens", "messages")})
    extra = {k: v for k, v in body.items() if k not in request}
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(**request, extra_body=extra)
    error = info.value
    assert error.body["type"] == "error" and set(error.body["error"]) == {"type", "message"}
    assert words in error.body["error"]["message"]
    if error.status_code == 400:
        assert isinstance(error, anthropic.BadRequestError)
        assert error.body["error"]["type"] == "invalid_request_error"
    else:
        assert isinstance(error, anthropic.NotFoundError) and error.body["error"]["type"] == "not_found_error"


def test_messages_errors_before_the_app_are_anthropic_shaped_too(agent_gateway):
    """The body-size middleware answers before any route: still Anthropic's shape on /v1/messages, OpenAI's on chat."""
    import httpx

    big = "x" * (agent_gateway.gateway.settings.max_request_bytes + 1)
    for path, shape in (("/v1/messages", {"type", "error"}), ("/v1/chat/completions", {"error"})):
        resp = httpx.post(f"{agent_gateway.url}{path}", content=big, headers={"content-type": "application/json"})
        assert resp.status_code == 413 and set(resp.json()) == shape
