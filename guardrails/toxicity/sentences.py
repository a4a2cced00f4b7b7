"""Sentence spans and scoring units of the toxicity guardrail.

Sentences come from ``blingfire`` (Microsoft's BlingFire tokenizer, a finite-state sentence breaker; PyPI
``blingfire``), chosen by measurement (``benchmarks/bench_toxicity_splitter.py``, 350 texts in de, ar, zh,
pt, pl, en joined from single-sentence rows): boundary F1 0.992 at ~10,700 texts/s, against sentencex 0.987
(64,000/s; English 0.932: splits after "Dr." and "e.g.") and pysbd 0.956 (640/s; Arabic 0.834). BlingFire
does not break at line breaks or at the Devanagari danda (``।``), so those are hard boundaries first.

Scoring units (:func:`scoring_units`): a short text (at most :data:`SHORT_WORDS` words) is one unit, the
shape the classifier heads were trained on (tweets). A longer text gives every sentence as a unit (a sentence
over :data:`MAX_UNIT_WORDS` words is cut into overlapping word windows, so nothing is truncated) plus windows
of 2 .. ``context`` adjacent sentences of at most :data:`MAX_UNIT_WORDS` words (cross-sentence context such as
"Some say X are vermin. I agree."). The guardrail takes the maximum per category over units.

All spans are ``(start, end)`` character offsets into the text as given (Python ``str`` indices).
"""

from __future__ import annotations

import re

SHORT_WORDS = 40  # a text of at most this many words is one unit (tweets: the heads' training shape)
MAX_UNIT_WORDS = 40  # a unit stays under the encoder's 64-word-piece window (backends.MAX_TOKENS)
LONG_STRIDE_WORDS = 24  # stride of the word windows that cover an over-long sentence
_HARD_BREAK = re.compile(r"\n\s*|(?<=[।॥])\s*")
_WORD = re.compile(r"\S+")
_TERMINAL = re.compile(r"[.!?。！？؟।॥…]['\"’”»)\]]*$")


def _blingfire_spans(text: str, offset: int) -> list[tuple[int, int]]:
    import blingfire

    _, offs = blingfire.text_to_sentences_and_offsets(text)
    return [(offset + a, offset + b) for a, b in offs if text[a:b].strip()]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of ``text``.

    Args:
        text: Any Unicode text.

    Returns:
        ``[(start, end), ...]`` character offsets in order, each span stripped of surrounding whitespace;
        every non-space character of ``text`` is in exactly one span. ``[]`` for a blank text.

    Raises:
        ImportError: when ``blingfire`` is not installed (a core dependency).
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _HARD_BREAK.finditer(text):
        if m.start() > pos:
            spans += _blingfire_spans(text[pos:m.start()], pos)
        pos = max(pos, m.end())
    if pos < len(text):
        spans += _blingfire_spans(text[pos:], pos)
    out = []
    for a, b in spans:  # BlingFire's spans are trimmed already; keep the guarantee explicit
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def complete_sentences(text: str) -> tuple[list[tuple[int, int]], int]:
    """The sentences of a growing (streamed) text that are complete, for sentence-by-sentence release.

    A sentence is complete when another sentence starts after it, or when it ends in a terminal mark
    (``. ! ? 。 ！ ？ ؟ । …``, closing quotes allowed) followed by whitespace or a line break. The last
    sentence of the buffer without that is the remainder: more tokens may still extend it.

    Args:
        text: The text received so far.

    Returns:
        ``(spans, remainder_start)``: the complete sentences' ``(start, end)`` offsets, and the offset from
        which the text is not yet complete (``len(text)`` when everything is).
    """
    spans = split_sentences(text)
    if not spans:
        return [], len(text)
    last_a, last_b = spans[-1]
    tail_closed = _TERMINAL.search(text[last_a:last_b]) is not None and last_b < len(text) \
        and text[last_b:].isspace()
    if tail_closed:
        return spans, len(text)
    return spans[:-1], last_a


def _words(text: str, a: int, b: int) -> list[tuple[int, int]]:
    return [(a + m.start(), a + m.end()) for m in _WORD.finditer(text[a:b])]


def scoring_units(text: str, sentences: list[tuple[int, int]] | None = None,
                  context: int = 3) -> list[tuple[int, int]]:
    """The spans of ``text`` the classifier scores.

    Args:
        text: The scanned text.
        sentences: Its sentence spans (:func:`split_sentences`), computed when ``None``.
        context: Largest number of adjacent sentences in a context window (1 = sentences only).

    Returns:
        Distinct ``(start, end)`` spans: the whole stripped text when it has at most :data:`SHORT_WORDS` words;
        otherwise every sentence (over-long ones as :data:`MAX_UNIT_WORDS`-word windows with stride
        :data:`LONG_STRIDE_WORDS`) and every run of 2 .. ``context`` adjacent sentences that fits in
        :data:`MAX_UNIT_WORDS` words. ``[]`` for a blank text.
    """
    words = _words(text, 0, len(text))
    if not words:
        return []
    if len(words) <= SHORT_WORDS:
        return [(words[0][0], words[-1][1])]
    sentences = split_sentences(text) if sentences is None else sentences
    units: list[tuple[int, int]] = []
    counts = []
    for a, b in sentences:
        w = _words(text, a, b)
        counts.append(len(w))
        if len(w) <= MAX_UNIT_WORDS:
            units.append((a, b))
            continue
        for i in range(0, len(w) - MAX_UNIT_WORDS + LONG_STRIDE_WORDS, LONG_STRIDE_WORDS):
            chunk = w[i:i + MAX_UNIT_WORDS]
            units.append((chunk[0][0], chunk[-1][1]))
    for k in range(2, context + 1):
        for i in range(len(sentences) - k + 1):
            if sum(counts[i:i + k]) <= MAX_UNIT_WORDS:
                units.append((sentences[i][0], sentences[i + k - 1][1]))
    return list(dict.fromkeys(units))


__all__ = ["split_sentences", "complete_sentences", "scoring_units", "SHORT_WORDS", "MAX_UNIT_WORDS"]
