"""Tools on the local backend through the model's chat template (issue 18): the embedded SmolLM2-135M's
template has no tool support (a 400 naming ``tools``, tests/integration/test_local_fields.py); here the same
weights get a Hermes-style tool-capable template written below, and the openai SDK calls a tool through it."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import openai
import pytest

from gateway.backends.localtools import parse_tool_calls, template_messages
from tests.agent_fixtures import TOOLS

MODEL = "smollm2-135m-instruct"
TOOL_TEMPLATE = """{%- if tools %}<|im_start|>system
You can call these functions:
{% for tool in tools %}{{ tool.function | tojson }}
{% endfor %}To call one, answer with
<tool_call>
{"name": <function name>, "arguments": <arguments object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}<|im_start|>{{ message.role }}
{% if message.tool_calls %}{% for call in message.tool_calls %}<tool_call>
{{ {"name": call.function.name, "arguments": call.function.arguments} | tojson }}
</tool_call>{% endfor %}{% else %}{{ message.content }}{% endif %}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _bounded(tools: list[dict]) -> list[dict]:
    """``tools`` with every string parameter capped at 40 characters: the grammar then has to close the call
    within max_tokens whatever the session's random watermark key does to the greedy path (uncapped, a 135M
    model can stay inside a string until ``length``, as a fresh-clone run saw)."""
    out = json.loads(json.dumps(tools))
    for tool in out:
        for prop in tool["function"]["parameters"].get("properties", {}).values():
            if prop.get("type") == "string":
                prop["maxLength"] = 40
    return out


TOOLS = _bounded(TOOLS)
PARAMETERS = TOOLS[0]["function"]["parameters"]


@pytest.fixture(scope="module")
def tool_server(gateway, home):
    """The session gateway's model and policy, with a tokenizer whose chat template supports tools."""
    from transformers import AutoTokenizer

    from gateway.api.app import create_app
    from gateway.backends.local import LocalBackend
    from tests.conftest import ServerThread

    tokenizer = AutoTokenizer.from_pretrained(home / "models" / f"{MODEL}-fp32")
    tokenizer.chat_template = TOOL_TEMPLATE
    backend = LocalBackend(None, home, gateway.backend.scheme, loaded=(gateway.backend.model, tokenizer, MODEL))
    gw = dataclasses.replace(gateway, backend=backend)
    with ServerThread(create_app(gw.settings, gateway=gw)) as srv:
        yield srv


@pytest.fixture()
def sdk(tool_server):
    return openai.OpenAI(base_url=f"{tool_server.url}/v1", api_key="unused", max_retries=0)


def _check_call(call):
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_required_tool_call_has_valid_arguments(sdk, choice):
    completion = sdk.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=120, temperature=0
    )
    choice0 = completion.choices[0]
    assert choice0.finish_reason == "tool_calls" and not choice0.message.content
    _check_call(choice0.message.tool_calls[0])
    assert completion.model_extra["greenlist"]["output"]["tool_calls"][0]["name"] == "get_weather"


def test_streamed_tool_call_deltas_reassemble(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=120, temperature=0, stream=True
    )
    pieces, finishes = {}, []
    for chunk in stream:
        for c in chunk.choices:
            finishes += [c.finish_reason] if c.finish_reason else []
            for d in c.delta.tool_calls or []:
                entry = pieces.setdefault(d.index, {"name": "", "arguments": ""})
                entry["name"] += (d.function and d.function.name) or ""
                entry["arguments"] += (d.function and d.function.arguments) or ""
    assert finishes == ["tool_calls"] and pieces[0]["name"] == "get_weather"
    jsonschema.validate(json.loads(pieces[0]["arguments"]), PARAMETERS)


def test_tool_round_trip(sdk):
    """tool call -> tool result -> an answer: the tool turns reach the template and the model answers."""
    first = sdk.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=120, temperature=0
    )
    call = first.choices[0].message.tool_calls[0]
    messages = ASK + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"},
    ]
    final = sdk.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice="none", max_tokens=24, temperature=0
    )
    assert final.choices[0].message.content and final.choices[0].message.tool_calls is None


def test_unknown_tool_choice_is_a_400(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
            max_tokens=8,
        )
    assert info.value.response.json()["error"]["param"] == "tool_choice"


def test_template_renders_tool_turns(tool_server, gateway, home):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(home / "models" / f"{MODEL}-fp32")
    tokenizer.chat_template = TOOL_TEMPLATE
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    prompt = tokenizer.apply_chat_template(
        template_messages(messages, lambda m: m.get("content") or ""), tools=TOOLS, tokenize=False
    )
    assert '"name": "get_weather"' in prompt and '{"city": "Paris"}' in prompt and "sunny" in prompt


def test_parse_tool_calls():
    text, calls = parse_tool_calls('Sure.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>')
    assert text == "Sure." and calls[0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert parse_tool_calls("<tool_call> not json </tool_call>") == ("<tool_call> not json </tool_call>", None)
    assert parse_tool_calls("plain") == ("plain", None)
