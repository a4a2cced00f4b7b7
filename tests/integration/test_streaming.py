"""The streaming guard on the real toxicity guardrail: sentence or token windows, hold-back, the final full check."""

from __future__ import annotations

import asyncio

import pytest

from gateway.policy.schema import LoadedPolicy, StreamingPolicy, parse_policy
from gateway.serving.pipeline import Pipeline
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
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer", unit="tokens", window_tokens=8, overlap_tokens=4))
    sent, verdict, stopped = asyncio.run(run(guard, BENIGN * 2 + TOXIC * 2))
    assert stopped and verdict.decision.value == "block"
    assert "idiot" not in sent and "moron" not in sent
    assert sent and BENIGN.startswith(sent[:40])
    windows = [c for c in guard.checks if c["kind"] == "window"]
    assert len(windows) >= 3 and windows[-1]["decision"] == "block"
    assert all(c["end"] - c["start"] > 0 for c in windows)


def test_benign_stream_is_fully_released_after_final_check(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer", unit="tokens", window_tokens=8, overlap_tokens=4))
    sent, verdict, stopped = asyncio.run(run(guard, BENIGN * 2))
    assert not stopped and verdict.decision.value == "allow"
    assert sent == guard.text and guard.checks[-1]["kind"] == "full"


def test_stream_first_sends_at_once_then_stops(pipeline):
    guard = StreamGuard(
        pipeline, StreamingPolicy(mode="stream-first", unit="tokens", window_tokens=6, overlap_tokens=2)
    )
    first, _ = asyncio.run(guard.feed("Hello "))
    assert first == "Hello "
    guard2 = StreamGuard(
        pipeline, StreamingPolicy(mode="stream-first", unit="tokens", window_tokens=6, overlap_tokens=2)
    )
    sent, verdict, stopped = asyncio.run(run(guard2, BENIGN + TOXIC * 3))
    assert stopped and verdict.decision.value == "block"
    assert len(sent) < len(BENIGN + TOXIC * 3)


def test_short_stream_is_still_checked_at_the_end(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer", unit="tokens", window_tokens=50, overlap_tokens=0))
    sent, verdict, stopped = asyncio.run(run(guard, TOXIC))
    assert not stopped and verdict.decision.value == "block" and sent == ""
    assert [c["kind"] for c in guard.checks] == ["full"]


PROSE = (
    "The lighthouse stood on the cliff for two hundred years. Its keeper climbed the stairs every evening. "
    "Ships passed safely through the narrow channel below. In winter the storms were fierce and long. "
)


async def _released_per_delta(guard: StreamGuard, text: str) -> list[str]:
    """Feed ``text`` one word at a time; the text released after each delta."""
    out = []
    for word in text.split(" "):
        released, verdict = await guard.feed(word + " ")
        assert verdict is None
        out.append(released)
    rest, _ = await guard.finish()
    return out + [rest]


def test_buffer_mode_releases_sentence_by_sentence(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer"))  # unit: sentence (default)
    released = asyncio.run(_released_per_delta(guard, PROSE))
    chunks = [r for r in released if r]
    assert "".join(released) == guard.text
    assert len(chunks) >= 3  # one release per sentence (the last may come with the final check)
    for chunk in chunks[:-1]:
        assert chunk.rstrip().endswith("."), chunk  # nothing released mid-sentence
    windows = [c for c in guard.checks if c["kind"] == "window"]
    assert len(windows) >= 3 and guard.summary()["unit"] == "sentence"
    assert windows[0]["start"] == 0 and all(w["end"] > w["start"] for w in windows)


def test_sentence_mode_blocks_before_the_toxic_sentence_is_released(pipeline):
    guard = StreamGuard(pipeline, StreamingPolicy(mode="buffer"))
    sent, verdict, stopped = asyncio.run(
        run(guard, PROSE + "You are a worthless stupid idiot and I hate you. " + PROSE)
    )
    assert stopped and verdict.decision.value == "block"
    assert "idiot" not in sent and sent.startswith("The lighthouse")
