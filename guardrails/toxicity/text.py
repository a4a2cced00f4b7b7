"""Text preparation shared by toxicity training and inference.

The same function runs on the training tweets and on scanned texts so the
classifier never sees a feature at inference time that training removed:
Unicode normalisation (:func:`greenlist.normalize.normalize`: NFKC,
zero-width removal, homoglyph folding, including lone look-alike letters in
mostly-Latin text), HTML entities decoded, and tweet
artefacts that only identify the *source corpus* (``RT``, ``@mentions``,
``@USER``, URLs, the ``#`` of hashtags) removed. Davidson writes mentions as
``@name`` and OLID as ``@USER``; left in, they would let the model learn which
corpus a text came from instead of whether it is toxic.
"""

from __future__ import annotations

import html
import re

from greenlist.normalize import normalize

_URL = re.compile(r"(?:https?://|www\.)\S+|\bURL\b", re.IGNORECASE)
_MENTION = re.compile(r"@\w+:?")
_RT = re.compile(r"\bRT:?\s*(?=@)")
_ELLIPSIS_ENTITY = re.compile(r"&#\d+;?")


def prepare(text: str) -> str:
    """Normalise ``text`` and strip tweet artefacts before classification.

    Args:
        text: Any Unicode string (a prompt, a model output or a tweet).

    Returns:
        The cleaned string (possibly empty). Words, punctuation, emoji and
        letter case are kept; hashtags keep their word (``#MAGA`` -> ``MAGA``).
    """
    text = normalize(html.unescape(html.unescape(text)))
    text = _ELLIPSIS_ENTITY.sub(" ", text)
    # the regexes below scan every position; these tests, cheaper, pass on every text they can match: a URL needs
    # "://", "www." or "url" in any case (IGNORECASE folds w, u, r, l only to W, U, R, L), RT and @mentions an "@"
    low = text.lower()
    if "://" in text or "www." in low or "url" in low:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _RT.sub(" ", text)
        text = _MENTION.sub(" ", text)
    text = text.replace("#", "")
    # runs of whitespace to one space (str.split() splits where the regex \s+ matches: both use str.isspace)
    return " ".join(text.split()).strip(" :")
