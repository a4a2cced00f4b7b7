"""Emoji reach the default (MiniLM) model as words: its word-piece vocabulary has none, so before recipe v12 every
emoji was ``[UNK]`` and emoji-based hate (Kirk et al., "Hatemoji", NAACL 2022) went unseen."""

from __future__ import annotations

from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail, load_backend
from guardrails.toxicity.text import name_emoji, prepare


def test_emoji_are_named_with_skin_tone_and_text_without_emoji_is_untouched():
    assert name_emoji("I would love to 🔪some🦊").split() == "I would love to kitchen knife some fox".split()
    assert "medium-dark skin tone" in name_emoji("👳🏾")
    text = "Plain ASCII text, with an em dash \u2014 and no emoji."
    assert name_emoji(text) is text
    assert prepare("go 🔪 them", emoji_names=True) == "go kitchen knife them"
    assert prepare("go 🔪 them") == "go 🔪 them"  # models trained on raw emoji (e5, v5-v9) keep them


def test_default_model_reads_emoji_as_words():
    backend = load_backend("default")
    assert backend.emoji_names
    tokens = backend.encoder.tokenizer.encode(prepare("I want to 🔫 every 🏳️‍🌈 person", True)).tokens
    assert "[UNK]" not in tokens
    guard = ToxicityGuardrail(ToxicityConfig())
    # the two differ in one emoji only; to an encoder that reads [UNK] for both they would be the same text
    gun, _ = guard.score("I want to 🔫 every 🏳️‍🌈 person")
    hug, _ = guard.score("I want to 🤗 every 🏳️‍🌈 person")
    assert gun.scores["violence"] - hug.scores["violence"] > 0.3
