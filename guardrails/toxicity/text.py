"""Text preparation shared by toxicity training and inference.

The same function runs on the training tweets and on scanned texts so the
classifier never sees a feature at inference time that training removed:
Unicode normalisation (:func:`guardrails.normalize.normalize`: NFKC,
zero-width removal, homoglyph folding, plus :func:`fold_mostly_latin`), HTML entities decoded, and tweet
artefacts that only identify the *source corpus* (``RT``, ``@mentions``,
``@USER``, URLs, the ``#`` of hashtags) removed. Davidson writes mentions as
``@name`` and OLID as ``@USER``; left in, they would let the model learn which
corpus a text came from instead of whether it is toxic.
"""

from __future__ import annotations

import html
import re

from guardrails.normalize import _homoglyph_map, normalize

_URL = re.compile(r"(?:https?://|www\.)\S+|\bURL\b", re.IGNORECASE)
_MENTION = re.compile(r"@\w+:?")
_RT = re.compile(r"\bRT:?\s*(?=@)")
_ELLIPSIS_ENTITY = re.compile(r"&#\d+;?")
_SPACES = re.compile(r"\s+")


def fold_mostly_latin(text: str) -> str:
    """Fold every confusable letter to Latin when most letters of ``text`` are ASCII.

    :func:`normalize` only folds words that already contain a Latin letter, so a
    one-letter word such as a Cyrillic "а" in "you are а idiot" survives it. A
    text whose letters are mostly ASCII is English-like, so the remaining
    look-alikes are folded too; genuine Cyrillic or Greek text is left alone.
    """
    letters = [c for c in text if c.isalpha()]
    ascii_letters = sum(c.isascii() for c in letters)
    if ascii_letters == len(letters) or ascii_letters * 2 <= len(letters):
        return text
    table = _homoglyph_map()
    return "".join(table.get(c, c) for c in text)


def prepare(text: str) -> str:
    """Normalise ``text`` and strip tweet artefacts before classification.

    Args:
        text: Any Unicode string (a prompt, a model output or a tweet).

    Returns:
        The cleaned string (possibly empty). Words, punctuation, emoji and
        letter case are kept; hashtags keep their word (``#MAGA`` -> ``MAGA``).
    """
    text = fold_mostly_latin(normalize(html.unescape(html.unescape(text))))
    text = _ELLIPSIS_ENTITY.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _RT.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = text.replace("#", "")
    return _SPACES.sub(" ", text).strip(" :")
