"""Offline language identification for the toxicity guardrail.

Detector: ``py3langid`` (PyPI; a maintained fork of Lui & Baldwin's
``langid.py``, ACL 2012, 97 languages, its naive-Bayes model ships inside the
wheel, no download), with normalised probabilities. It loads in about 1.5 s on
first use and classifies a tweet-length text in well under a millisecond.
``lingua-language-detector`` was also tried: more languages, but 37 s to
preload its models and a first call per language of up to a second, and it
labelled "you are an idiot" Maori; so it was not chosen.

Short texts are hard for every detector ("lol ok" comes out as Volapük). A
detection whose probability is below ``min_confidence`` is reported as
``"und"`` (undetermined) when most of the text's letters are ASCII, so short
English-like texts keep going to the English model; a text mostly in another
script (Cyrillic, CJK, Arabic, ...) keeps its detected language even at low
confidence, because it is certainly not English.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_lock = threading.Lock()
SAMPLE_CHARS = 600
"""A longer text is identified from three slices of it (start, middle, end; 200 characters each): the detector's
cost grows with the length (~1 ms for a 1,000-character answer on the 2-core VM). Measured 2026-12-07: the same
language as from the whole text for 1,800 of 1,800 texts of 600-2,000 characters (12 joined rows of each
toxicity_extra language, 300 English answers, and English-intro + foreign-body mixes)."""


_ASCII_NON_LETTERS = bytes(b for b in range(128) if not chr(b).isalpha())


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str, min_confidence: float = 0.5) -> tuple[str, float]:
    """Detect the language of ``text``.

    Args:
        text: Any text (normalised or not); past :data:`SAMPLE_CHARS` characters, three slices of it.
        min_confidence: Below this probability, a mostly-ASCII text is
            reported as ``"und"``.

    Returns:
        ``(iso_639_1_code or "und", probability)``; ``("und", 0.0)`` for a text
        with fewer than two letters.

    Raises:
        ImportError: when ``py3langid`` is not installed.
    """
    if len(text) > SAMPLE_CHARS:
        k, mid = SAMPLE_CHARS // 3, len(text) // 2
        text = f"{text[:k]} {text[mid - k // 2 : mid + k // 2]} {text[-k:]}"
    letters = sum(map(str.isalpha, text))
    if letters < 2:
        return "und", 0.0
    with _lock:
        code, prob = _identifier().classify(text)
    prob = float(prob)
    if prob < min_confidence:
        # the ASCII letters: the ASCII characters (encode drops the others) that are letters (translate drops the rest)
        ascii_letters = len(text.encode("ascii", "ignore").translate(None, _ASCII_NON_LETTERS))
        if ascii_letters / letters >= 0.5:
            return "und", prob
    return str(code), prob
