"""The official openai SDK, pointed at Greenlist, works unchanged."""

from __future__ import annotations

import openai
import pytest

MODEL = "smollm2-135m-instruct"


@pytest.fixture()
def sdk(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_chat(sdk):
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=16, temperature=0
    )
    assert completion.choices[0].message.content.strip()
    assert completion.usage.completion_tokens > 0
    assert completion.model_extra["greenlist"]["watermark"]["applied"] is True


def test_streamed_chat(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=24,
        stream=True,
        temperature=0,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_moderations(sdk):
    result = sdk.moderations.create(input=["I will hurt you, you disgusting idiot.", "I love sunny days."])
    toxic, benign = result.results
    assert toxic.flagged and not benign.flagged
    assert toxic.category_scores.harassment > benign.category_scores.harassment


def test_content_filter_raises_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "You are a worthless stupid idiot and I hate you."}],
            max_tokens=8,
        )
    assert info.value.code == "content_filter"
