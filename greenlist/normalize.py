"""Text normalisation against cheap evasion, shared by guardrails and the watermark detector.

Three steps, each a function so callers can pick:

* Unicode normal form (NFKC for guardrails, NFC for the watermark detector);
* removal of invisible format characters (zero-width spaces and joiners, bidi
  controls, soft hyphens: Unicode category ``Cf``);
* homoglyph folding: a character of another script that looks like a Latin
  letter (Cyrillic "а", Greek "ο") is mapped to that letter when it stands in a
  word that also has Latin letters, so genuine Cyrillic or Greek text is left
  alone. The confusable table is Unicode's ``confusables.txt`` as shipped by
  the ``confusable-homoglyphs`` package.

Reference: the normalisers of Kirchenbauer et al.'s lm-watermarking repository
(``normalizers.py``: unicode, homoglyph canonicalisation) and Unicode TR39.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from importlib.resources import files
from typing import Literal

_WORD = re.compile(r"\w+", re.UNICODE)


@functools.cache
def _homoglyph_map() -> dict[str, str]:
    """Map each non-Latin confusable character to its single Latin look-alike."""
    table = json.loads(files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    out: dict[str, str] = {}
    for char, entries in table.items():
        if len(char) != 1 or char.isascii():
            continue
        for entry in entries:
            glyph = entry["c"]
            if len(glyph) == 1 and glyph.isascii() and glyph.isalpha():
                out[char] = glyph
                break
    return out


def strip_invisible(text: str) -> str:
    """Remove Unicode format characters (category ``Cf``): zero-width and bidi controls."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def fold_homoglyphs(text: str) -> str:
    """Replace look-alike letters of other scripts by Latin letters where Latin is the script in use.

    A word is folded when it contains an ASCII letter, or when most letters of
    the whole text are ASCII; so a Russian sentence stays Russian while
    "pаypal" and a lone Cyrillic "а" in an English sentence become Latin.
    """
    table = _homoglyph_map()
    letters = [c for c in text if c.isalpha()]
    latin_text = sum(c.isascii() for c in letters) * 2 > len(letters)

    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.isascii() or not (latin_text or any(c.isascii() and c.isalpha() for c in word)):
            return word
        return "".join(table.get(c, c) for c in word)

    return _WORD.sub(fold, text)


def normalize(text: str, form: Literal["NFC", "NFD", "NFKC", "NFKD"] = "NFKC") -> str:
    """Apply the Unicode normal form ``form``, strip invisibles and fold homoglyphs.

    Args:
        text: Any Unicode string.
        form: ``"NFKC"`` (guardrails: also folds full-width and ligature forms)
            or ``"NFC"`` (watermark detector: keeps compatibility characters).

    Returns:
        The normalised string. Lengths and offsets may differ from ``text``.
    """
    if text.isascii():  # every step is the identity on ASCII (no format characters, no other script)
        return text
    return fold_homoglyphs(strip_invisible(unicodedata.normalize(form, replace_surrogates(text))))


def replace_surrogates(text: str) -> str:
    """Replace lone UTF-16 surrogates (valid in JSON escapes, invalid in UTF-8) by U+FFFD.

    Found by fuzzing: ``"\\ud800"`` in a request body reached the tokenizers,
    which raise on it.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


# --- de-obfuscation for lexical guardrails ---------------------------------------------------------------------
# Leetspeak digits and symbols that stand for letters inside a word ("1d10t", "@$$hole", "sh!t").
_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
        "€": "e",
        "¡": "i",
    }
)
# a token with a letter and at least one leetspeak character (the look-ahead keeps the other ~99 % of words out of
# the Python callback: 0.5 -> 0.1 ms for a 150-word answer, 2026-12-07)
_LEET_WORD = re.compile(r"(?<![\w@$!|+€¡])(?=[\w@$!|+€¡]*[0134578@$!|+€¡])[\w@$!|+€¡]*[A-Za-z][\w@$!|+€¡]*")
_LEET_CHARS = frozenset("0134578@$!|+€¡")
# Three or more single characters separated by spaces or punctuation: "i d i o t", "i.d.i.o.t", "i-d-i-o-t".
_SPACED = re.compile(r"(?<![\w@$])(?:[\w@$](?:[ \t._\-*~/\\]{1,3})){2,}[\w@$](?![\w@$])")
_SEPARATORS = re.compile(r"[ \t._\-*~/\\]+")
# digits no letter looks like, or three digits in a row: a number or a code, not leetspeak
_NUMBER = re.compile(r"[269]|\d{3}")


def _unleet_word(match: re.Match[str]) -> str:
    word = match.group(0)
    core = word.rstrip("!")  # "idiot!" keeps its exclamation mark
    if not any(c in _LEET_CHARS for c in core) or core.isdigit() or _NUMBER.search(core):
        return word  # no leetspeak, or a number / code ("a1b2c3", "COVID19", "A$378m")
    letters = sum(c.isalpha() for c in core)
    if letters < 1 or letters * 4 < len(core):  # mostly digits: a number, a code, not a word
        return word
    first = next(i for i, c in enumerate(core) if c.isalpha())
    last = max(i for i, c in enumerate(core) if c.isalpha())
    inside = any(c in _LEET_CHARS for c in core[first:last])  # "1d10t", "sh!t": leet between letters
    edges = core[:first] + core[last + 1 :]
    symbols = bool(edges) and not any(c.isdigit() for c in edges)  # "@$$hole", "a$$": symbols around a word
    if not (inside or symbols):  # "50M", "F-15E", "$1B", "mp3": a quantity or a name with a number
        return word
    return core.translate(_LEET) + word[len(core) :]


def _join_spaced(match: re.Match[str]) -> str:
    """Join each stretch of 3+ single characters that one separator links ("i d i o t", "s-t-u-p-i-d") and that
    has 2+ letters; "a s-t-u-p-i-d" -> "a stupid", while "a U.S.", "a 3-2" and "8 1/3" (separators mixed at
    every step) and "1 2 3" (no letters) stay."""
    run = match.group(0)
    chars, seps = _SEPARATORS.split(run), _SEPARATORS.findall(run)  # seps[i] lies between chars[i] and chars[i+1]
    out: list[str] = []
    i = 0
    while i < len(chars):
        j = i
        while j < len(seps) and seps[j] == seps[i]:
            j += 1
        stretch = chars[i : j + 1]
        if len(stretch) >= 3 and sum(c.isalpha() for c in stretch) >= 2:
            out.append("".join(stretch))
        else:
            out.append(chars[i])
            j = i
        if j < len(seps):
            out.append(seps[j])
        i = j + 1
    return "".join(out)


def deobfuscate(text: str) -> str:
    """Undo spacing and leetspeak tricks so lexical guardrails see the intended words.

    * Runs of three or more single characters split by one and the same separator (spaces or punctuation),
      with at least two letters, are joined: ``"i d i o t"`` -> ``"idiot"``, ``"s.t.u.p.i.d"`` -> ``"stupid"``
      (``"a U.S. court"``, ``"a 3-2 win"`` mix separators and stay).
    * Inside words that mix letters with leetspeak digits or symbols, those are mapped to letters when they
      stand between letters or are symbols around a word: ``"1d10t"`` -> ``"idiot"``, ``"@$$hole"`` ->
      ``"asshole"``, ``"sh!t"`` -> ``"shit"``. Numbers ("2023"), mostly-digit tokens, quantities and names
      with a number at one end ("$50M", "F-15E", "mp3") and tokens with digits no letter looks like
      ("COVID19", "a1b2c3") are left alone: each change costs the guardrails a second scan of the text.

    It runs after :func:`normalize` and is meant for matching, not display:
    the result can turn an innocent token ("h4x0r", "mp3") into a different
    word, so callers scan it in addition to the original text, not instead.

    Args:
        text: Normalised text.

    Returns:
        The de-obfuscated text (equal to ``text`` when nothing applied).
    """
    text = _SPACED.sub(_join_spaced, text)
    return _LEET_WORD.sub(_unleet_word, text)
