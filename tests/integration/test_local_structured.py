"""``response_format`` on the local backend (embedded SmolLM2-135M-Instruct), through the official openai SDK:
constrained decoding with llguidance, composed with the watermark (issue 18, structured outputs)."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

MODEL = "smollm2-135m-instruct"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
STRICT = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
ASK = [{"role": "user", "content": "Describe a person (name, age, city) as JSON."}]


@pytest.fixture()
def sdk(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("temperature, seed", [(0, None), (1.0, 3)])
def test_json_schema_strict_validates(sdk, temperature, seed):
    completion = sdk.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=80, temperature=temperature, seed=seed, response_format=STRICT
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content), SCHEMA)
    assert completion.model_extra["greenlist"]["watermark"]["applied"] is True  # composed with the watermark


def test_json_object_parses(sdk):
    """Any JSON object: unbounded, so a 135M model can loop inside it until max_tokens (``length``, the JSON cut,
    as OpenAI warns); every completion starts as an object, and one that ends by itself parses. Seeds are tried
    until one ends (how many loop depends on the session's random watermark key)."""
    for seed in range(1, 13):
        completion = sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Return a JSON object with keys colour and number."}],
            max_tokens=120,
            temperature=1.0,
            seed=seed,
            response_format={"type": "json_object"},
        )
        choice = completion.choices[0]
        assert choice.message.content.startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
            return
    pytest.fail("no json_object completion ended within max_tokens in 12 seeds")


def test_streamed_json_schema_validates(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=80, temperature=0, response_format=STRICT, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_responses_api_text_format(sdk):
    """``text.format`` of the Responses API is translated to ``response_format``: the same constraint applies."""
    response = sdk.responses.create(
        model=MODEL,
        input=ASK[0]["content"],
        max_output_tokens=80,
        temperature=0,
        text={"format": {"type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}},
    )
    jsonschema.validate(json.loads(response.output_text), SCHEMA)


@pytest.mark.parametrize(
    "response_format, param, words",
    [
        (
            {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "objekt"}, "strict": True}},
            "response_format.json_schema.schema",
            "objekt",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "bad", "schema": {"type": "object", "required": 3}},
            },
            "response_format.json_schema.schema",
            "required",
        ),
        ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, "response_format.json_schema.name", "name"),
        ({"type": "json_schema"}, "response_format.json_schema", "json_schema"),
        ({"type": "yaml"}, "response_format.type", "yaml"),
    ],
)
def test_invalid_response_format_is_a_400_naming_the_field(sdk, response_format, param, words):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, response_format=response_format)
    body = info.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"
    assert words in body["error"]["message"]


def test_grammar_holds_under_a_strong_watermark(gateway):
    """Whatever δ the watermark adds to green tokens, the grammar's mask (applied after it) keeps the JSON valid."""
    import asyncio

    from gateway.backends.base import GenerationRequest

    request = GenerationRequest(
        model=MODEL,
        messages=ASK,
        max_tokens=80,
        temperature=1.0,
        seed=5,
        watermark_delta=30.0,  # far above any usable δ: unconstrained, the text would be green-token soup
        body={"response_format": STRICT},
    )
    generation = asyncio.run(gateway.backend.generate(request))
    assert generation.finish_reason == "stop", generation
    jsonschema.validate(json.loads(generation.text), SCHEMA)
