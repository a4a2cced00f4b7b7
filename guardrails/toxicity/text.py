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

With ``emoji_names``, emoji are replaced by their CLDR short names (``🔪`` -> ``kitchen knife``,
``👳🏾`` -> ``person wearing turban medium-dark skin tone``), from the ``emoji`` package's data: MiniLM's
word-piece vocabulary has no emoji, so without names every emoji is ``[UNK]`` and emoji-based hate (Kirk et
al., "Hatemoji", NAACL 2022) reaches the encoder as "I would love to [UNK] some [UNK]".
"""

from __future__ import annotations

import html
import re

from greenlist.normalize import normalize

_URL = re.compile(r"(?:https?://|www\.)\S+|\bURL\b", re.IGNORECASE)
_MENTION = re.compile(r"@\w+:?")
_RT = re.compile(r"\bRT:?\s*(?=@)")
_ELLIPSIS_ENTITY = re.compile(r"&#\d+;?")
# every emoji holds a code point in these ranges (a cheap test before the emoji package's slower scan)
_MAYBE_EMOJI = re.compile("[\u00a9\u00ae\u203c-\u3299\U0001f000-\U0001faff]")


def name_emoji(text: str) -> str:
    """``text`` with each emoji replaced by its CLDR short name, spaced (skin tone and ZWJ sequences are one emoji).

    Args:
        text: Any string.

    Returns:
        The string with names in place of emoji (runs of spaces left for :func:`prepare` to collapse).
    """
    if not _MAYBE_EMOJI.search(text):
        return text
    import emoji

    return str(emoji.replace_emoji(text, replace=lambda _, data: f" {data['en'].strip(':').replace('_', ' ')} "))


def prepare(text: str, emoji_names: bool = False) -> str:
    """Normalise ``text`` and strip tweet artefacts before classification.

    Args:
        text: Any Unicode string (a prompt, a model output or a tweet).
        emoji_names: Replace emoji by their names (:func:`name_emoji`; for an encoder whose vocabulary lacks
            emoji; a model's weights say whether it was trained so).

    Returns:
        The cleaned string (possibly empty). Words, punctuation, emoji (or their names) and
        letter case are kept; hashtags keep their word (``#MAGA`` -> ``MAGA``).
    """
    text = normalize(html.unescape(html.unescape(text)))
    if emoji_names:
        text = name_emoji(text)
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
