"""The streaming guard on the real toxicity guardrail: windows, hold-back and the final full check."""

from __future__ import annotations

import asyncio

import pytest

from gateway.serving.pipeline import Pipeline
from gateway.policy.schema import LoadedPolicy, StreamingPolicy, parse_policy
from gateway.serving.streaming import StreamGuard

BENIGN = "The garden was quiet in the morning and the birds sang while we drank our tea by the window . "
TOXIC = "You are a worthless stupid idiot and a pathetic moron , I hate you . "


@pytest.fixture(scope="module")
def pipeline(home):
    policy = parse_policy("name: s\noutput:\n  - type: toxicity\n    threshold: 0.5\n    action: block\n")
    return Pipeline(LoadedPolicy(policy, "test", None))  # type: ignore[arg-type]


async def run(guard: StreamGuard, text: str):
    sent, verdict = "", None
    for word in text.split(" "):
        out, verdict = await guard.feed(word + " ")
        sent += out
        if verdict is not None:
            return sent, verdict, True
    out, verdict = await guard.finish()
    return sent + out, verdict, False


def test_buffer_mode_releases_only_checked_text(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer", window_tokens=8, overlap_tokens=4))
    sent, verdict, stopped = asyncio.run(run(guard, BENIGN * 2 + TOXIC * 2))
    assert stopped and verdict.decision.value == "block"
    assert "idiot" not in sent and "moron" not in sent
    assert sent and BENIGN.startswith(sent[:40])
    windows = [c for c in guard.checks if c["kind"] == "window"]
    assert len(windows) >= 3 and windows[-1]["decision"] == "block"
    assert all(c["end"] - c["start"] > 0 for c in windows)


def test_benign_stream_is_fully_released_after_final_check(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer", window_tokens=8, overlap_tokens=4))
    sent, verdict, stopped = asyncio.run(run(guard, BENIGN * 2))
    assert not stopped and verdict.decision.value == "allow"
    assert sent == guard.text and guard.checks[-1]["kind"] == "full"


def test_stream_first_sends_at_once_then_stops(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="stream-first", window_tokens=6, overlap_tokens=2))
    first, _ = asyncio.run(guard.feed("Hello "))
    assert first == "Hello "
    guard2 = StreamGuard(pipeline, StreamingPolicy(mode="stream-first", window_tokens=6, overlap_tokens=2))
    sent, verdict, stopped = asyncio.run(run(guard2, BENIGN + TOXIC * 3))
    assert stopped and verdict.decision.value == "block"
    assert len(sent) < len(BENIGN + TOXIC * 3)


def test_short_stream_is_still_checked_at_the_end(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer", window_tokens=50, overlap_tokens=0))
    sent, verdict, stopped = asyncio.run(run(guard, TOXIC))
    assert not stopped and verdict.decision.value == "block" and sent == ""
    assert [c["kind"] for c in guard.checks] == ["full"]
