"""Sentence-level toxicity scoring on the real packaged model: spans, redaction, long texts, cache, moderation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from guardrails.base import Decision, Direction
from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail
from guardrails.toxicity.sentences import complete_sentences, scoring_units, split_sentences

ROOT = Path(__file__).resolve().parents[2]
TOXIC_SENTENCE = "You are a worthless, disgusting idiot and everyone hates you."
BENIGN_SENTENCES = [
    "Lighthouses were built along dangerous coasts to warn ships away from rocks and shallow water.",
    "Early towers burned wood or coal in an open fire at the top.",
    "In the eighteenth century, oil lamps with polished reflectors made the light visible much further out.",
    "The Fresnel lens, introduced in 1823, bent the light into a narrow beam that could reach the horizon.",
    "Each lighthouse has its own pattern of flashes, so sailors can tell one from another at night.",
    "Keepers lived in small cottages beside the tower and climbed the stairs several times a night.",
    "They trimmed the wicks, wound the clockwork that turned the lens and kept the glass spotless.",
    "Fog signals such as bells, horns and sirens helped when the light could not be seen.",
    "Most lighthouses are now automated and monitored from a control centre on shore.",
    "Many old towers have become museums where visitors can climb to the lantern room.",
    "Some of them rent out the keepers' cottages as holiday homes.",
    "Photographers love them at sunset, when the white towers glow against the sea.",
]


def _answer(words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        out.append(rng.choice(BENIGN_SENTENCES))
    return " ".join(out)


def _policy_entry(direction: str = "output") -> dict:
    from gateway.policy.schema import load_policy

    policy = load_policy(ROOT / "policies" / "default.yaml").policy
    return next(e for e in getattr(policy, direction) if e.type == "toxicity").model_dump(exclude_unset=True)


@pytest.fixture(scope="module")
def guard() -> ToxicityGuardrail:
    return ToxicityGuardrail(ToxicityConfig(**_policy_entry()))


def test_splitter_spans_and_complete_sentences():
    text = "Dr. Smith arrived at 3.5 p.m. today. He was late!\nNext line without a stop"
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "Dr. Smith arrived at 3.5 p.m. today.",
        "He was late!",
        "Next line without a stop",
    ]
    done, rest = complete_sentences("First one. Second one is still being wri")
    assert [("First one. Second one is still being wri")[a:b] for a, b in done] == ["First one."]
    assert rest == len("First one. ")
    done, rest = complete_sentences("All done here. ")
    assert len(done) == 1 and rest == len("All done here. ")
    assert split_sentences("你好。我很好！谢谢") == [(0, 3), (3, 7), (7, 9)]


def test_units_cover_long_text_and_short_text_is_one_unit():
    assert scoring_units("Tell me about lighthouses. And ships.") == [(0, len("Tell me about lighthouses. And ships."))]
    text = _answer(300)
    units = scoring_units(text)
    sents = split_sentences(text)
    assert set(sents) <= set(units)  # every sentence is scored on its own
    assert any(b - a > max(e - s for s, e in sents) for a, b in units)  # and in windows of adjacent sentences
    covered = set()
    for a, b in units:
        covered.update(range(a, b))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


def test_long_benign_answer_with_one_toxic_sentence_is_caught_at_its_span(guard):
    benign = _answer(300, seed=1)
    assert guard.scan(benign, Direction.OUTPUT).decision is Decision.ALLOW
    cut = benign.index(". ", len(benign) // 2) + 2
    text = benign[:cut] + TOXIC_SENTENCE + " " + benign[cut:]
    res = guard.scan(text, Direction.OUTPUT)
    assert res.decision is Decision.BLOCK
    span = res.details["span"]
    start = text.index(TOXIC_SENTENCE)
    assert span["start"] >= start - 200 and span["end"] <= start + len(TOXIC_SENTENCE) + 200
    assert start <= span["start"] < start + len(TOXIC_SENTENCE) or span["start"] < start < span["end"]
    assert span["category"] in ("harassment", "hate", "violence")


def test_redact_replaces_only_the_offending_sentence(guard):
    entry = {**_policy_entry(), "action": "redact"}
    g = ToxicityGuardrail(ToxicityConfig(**entry))
    benign = _answer(200, seed=2)
    cut = benign.index(". ", len(benign) // 3) + 2
    text = benign[:cut] + TOXIC_SENTENCE + " " + benign[cut:]
    res = g.scan(text, Direction.OUTPUT)
    assert res.decision is Decision.REDACT
    assert res.sanitized_text == benign[:cut] + "[removed] " + benign[cut:]
    assert g.redact(text) == (res.sanitized_text, [(cut, cut + len(TOXIC_SENTENCE))])
    assert g.redact(benign) == (benign, [])


def test_5000_word_text_with_toxic_last_sentence_is_caught(guard):
    text = _answer(5000, seed=3) + " " + TOXIC_SENTENCE
    assert len(text.split()) > 5000
    res = guard.scan(text, Direction.OUTPUT)
    assert res.decision is Decision.BLOCK
    assert res.details["span"]["end"] == len(text) or res.details["span"]["start"] >= text.rindex(TOXIC_SENTENCE) - 300


def test_moderation_semantics_profanity_alone_does_not_flag(guard):
    out = guard.moderate(
        ["Fuck, I dropped my phone in the sink again.", "You are a fucking idiot.", "Tell me about lighthouses."]
    )
    prof, insult, benign = out
    assert prof["category_scores"]["profanity"] > 0.5 and prof["categories"]["profanity"]
    assert not prof["flagged"]
    assert insult["flagged"] and insult["categories"]["harassment"]
    assert not benign["flagged"]
    assert {"hate", "harassment", "violence", "sexual", "profanity"} <= set(insult["category_scores"])
    assert guard.scan("Fuck, I dropped my phone in the sink again.", Direction.OUTPUT).decision is Decision.FLAG


def test_cache_final_check_does_not_rescore_streamed_sentences():
    g = ToxicityGuardrail(ToxicityConfig(**_policy_entry()))
    text = _answer(250, seed=4)
    # stream: release sentence by sentence, scanning each complete prefix
    released = 0
    for end in range(40, len(text) + 40, 40):
        buf = text[:end]
        _, rest = g.complete_sentences(buf)
        if rest > released:
            assert g.scan(buf[:rest], Direction.OUTPUT).decision is Decision.ALLOW
            released = rest
    assert 0 < released < len(text)
    misses = g.cache.misses
    g.scan(text, Direction.OUTPUT)  # the final check after the last token (its time: benchmarks, not tests)
    units = scoring_units(text)
    tail = [u for u in units if u[1] > released]  # units that reach into the text never released
    new_units = g.cache.misses - misses
    assert new_units <= len(tail) < len(units) / 3, "the final check re-scored sentences the stream had scored"
    # a different text sharing sentences re-scores only the new ones
    before_h, before_m = g.cache.hits, g.cache.misses
    g.scan(text + " " + TOXIC_SENTENCE, Direction.OUTPUT)
    new = g.cache.misses - before_m
    assert 1 <= new <= 3 and g.cache.hits - before_h >= len(split_sentences(text))


@pytest.mark.parametrize(
    "text",
    [
        "Tell me about lighthouses.",
        _answer(150, seed=5),
        "Sure! Lighthouses guide ships at night. Would you like to know about a famous one?",
    ],
)
def test_benign_answers_not_blocked(guard, text):
    assert guard.scan(text, Direction.OUTPUT).decision is Decision.ALLOW


def test_long_benign_prose_not_blocked(guard):
    from guardrails.toxicity.training.splits import data_root

    path = data_root() / "human_text" / "british_novels.jsonl"
    if not path.exists():
        pytest.skip("shared data absent")
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    paras = [r["text"] for r in random.Random(7).sample(rows, 40)]
    blocked = [p[:80] for p in paras if guard.scan(p, Direction.OUTPUT).decision is Decision.BLOCK]
    assert len(blocked) <= 1, blocked


def test_strictness_validation_and_override():
    with pytest.raises(ValueError, match="strictness must be one of strict, balanced, permissive"):
        ToxicityConfig(strictness="lenient")
    with pytest.raises(ValueError, match=r"category thresholds must be in \[0, 1\]"):
        ToxicityConfig(categories={"hate": 1.5})
    g = ToxicityGuardrail(ToxicityConfig(strictness="balanced", categories={"hate": 0.123}))
    assert g.thresholds["hate"] == 0.123
    strict = ToxicityGuardrail(ToxicityConfig(strictness="strict")).thresholds
    perm = ToxicityGuardrail(ToxicityConfig(strictness="permissive")).thresholds
    assert all(strict[c] <= perm[c] for c in ("hate", "harassment", "violence", "sexual"))


def test_context_windows_are_composed_from_their_sentences_runs():
    """A long text's 2-3-sentence windows cost no encoder runs of their own: each distinct sentence is encoded
    once, and a window's embedding is the word-piece-weighted mean of its sentences' (checked against the
    sentences' own means)."""
    import numpy as np

    from guardrails.toxicity.onnx_encoder import normalize
    from guardrails.toxicity.text import prepare

    g = ToxicityGuardrail(ToxicityConfig(**_policy_entry(), cache_size=0))
    encoder = g.backend.encoder
    seen: list[str] = []
    original = encoder.encode_means

    def recording(texts, layers):
        seen.extend(texts)
        return original(texts, layers)

    encoder.encode_means = recording
    try:
        text = " ".join(BENIGN_SENTENCES[:6]) + " I would never say that immigrants are vermin. " + TOXIC_SENTENCE
        ts = g.score(text)[0]
    finally:
        del encoder.encode_means
    sentences = [prepare(text[a:b]) for a, b in split_sentences(text)]
    windows = [u for u in ts.units if sum(a >= u[0] and b <= u[1] for a, b in split_sentences(text)) > 1]
    assert windows, "the text should have context windows"
    assert sorted(seen) == sorted(set(sentences)), "windows must not be encoded on their own"
    # the composed window equals the count-weighted mean of its sentences' mean states
    a, b = windows[0]
    parts = [text[s:e] for s, e in split_sentences(text) if s >= a and e <= b]
    means, counts = original([prepare(p) for p in parts], g.backend.layers)
    expected = normalize(np.tensordot(counts / counts.sum(), means, axes=1)).reshape(-1)
    got = g.backend.classify([text[a:b]], [parts])[0]
    probs = g.backend._probabilities(expected[None, :], [prepare(text[a:b])])[0]
    assert max(abs(got[c] - float(p)) for c, p in zip(g.backend.categories, probs, strict=True)) < 1e-6
    assert ts.scores["harassment"] >= 0.5 and text[slice(*ts.span("harassment"))].startswith("You are")
