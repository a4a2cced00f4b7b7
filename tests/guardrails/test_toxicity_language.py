"""Language identification of long texts: identified from three slices (start, middle, end), majority kept."""

from __future__ import annotations

from guardrails.toxicity.language import SAMPLE_CHARS, detect_language

GERMAN = (
    "Der Leuchtturm steht seit über hundert Jahren an der Küste und warnt die Schiffe vor den Felsen. "
    "Früher lebte der Wärter mit seiner Familie in dem kleinen Haus neben dem Turm. "
)
ENGLISH = (
    "Lighthouses were built along dangerous coasts to warn ships away from the rocks at night. "
    "Most of them are automated today and monitored from a control centre far away. "
)


def test_long_german_text_with_an_english_intro_is_german() -> None:
    text = ENGLISH[:150] + GERMAN * 12
    assert len(text) > 3 * SAMPLE_CHARS
    assert detect_language(text)[0] == "de"


def test_long_english_text_quoting_german_is_english() -> None:
    text = ENGLISH * 6 + GERMAN[:120] + ENGLISH * 6
    assert detect_language(text)[0] == "en"


def test_short_text_is_read_whole() -> None:
    assert detect_language(GERMAN)[0] == "de"
    assert detect_language("lol ok")[0] == "und"  # low confidence, mostly ASCII
