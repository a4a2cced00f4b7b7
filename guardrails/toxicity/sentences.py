"""Sentence spans and scoring units of the toxicity guardrail.

Sentences come from :mod:`greenlist.sentences` (BlingFire, chosen by measurement: see there).

Scoring units (:func:`scoring_units`): a short text (at most :data:`SHORT_WORDS` words) is one unit, the
shape the classifier heads were trained on (tweets). A longer text gives every sentence as a unit (a sentence
over :data:`MAX_UNIT_WORDS` words is cut into overlapping word windows, so nothing is truncated) plus windows
of 2 .. ``context`` adjacent sentences of at most :data:`MAX_UNIT_WORDS` words (cross-sentence context such as
"Some say X are vermin. I agree."). The guardrail takes the maximum per category over units.

All spans are ``(start, end)`` character offsets into the text as given (Python ``str`` indices).
"""

from __future__ import annotations

import re

from greenlist.sentences import complete_sentences, split_sentences

SHORT_WORDS = 40  # a text of at most this many words is one unit (tweets: the heads' training shape)
MAX_UNIT_WORDS = 40  # a unit stays under the encoder's 64-word-piece window (backends.MAX_TOKENS)
LONG_STRIDE_WORDS = 24  # stride of the word windows that cover an over-long sentence
_WORD = re.compile(r"\S+")


def _words(text: str, a: int, b: int) -> list[tuple[int, int]]:
    return [(a + m.start(), a + m.end()) for m in _WORD.finditer(text[a:b])]


def scoring_units(text: str, sentences: list[tuple[int, int]] | None = None, context: int = 3) -> list[tuple[int, int]]:
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
    # str.split() splits where the regex \s does (both: str.isspace), so its pieces are _WORD's matches
    n_words = len(text.split())
    if not n_words:
        return []
    if n_words <= SHORT_WORDS:
        return [(len(text) - len(text.lstrip()), len(text.rstrip()))]
    sentences = split_sentences(text) if sentences is None else sentences
    units: list[tuple[int, int]] = []
    counts = []
    for a, b in sentences:
        counts.append(len(text[a:b].split()))
        if counts[-1] <= MAX_UNIT_WORDS:
            units.append((a, b))
            continue
        w = _words(text, a, b)
        for i in range(0, len(w) - MAX_UNIT_WORDS + LONG_STRIDE_WORDS, LONG_STRIDE_WORDS):
            chunk = w[i : i + MAX_UNIT_WORDS]
            units.append((chunk[0][0], chunk[-1][1]))
    for k in range(2, context + 1):
        for i in range(len(sentences) - k + 1):
            if sum(counts[i : i + k]) <= MAX_UNIT_WORDS:
                units.append((sentences[i][0], sentences[i + k - 1][1]))
    return list(dict.fromkeys(units))


__all__ = ["split_sentences", "complete_sentences", "scoring_units", "SHORT_WORDS", "MAX_UNIT_WORDS"]
