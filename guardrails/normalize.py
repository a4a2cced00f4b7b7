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


def normalize(text: str, form: str = "NFKC") -> str:
    """Apply the Unicode normal form ``form``, strip invisibles and fold homoglyphs.

    Args:
        text: Any Unicode string.
        form: ``"NFKC"`` (guardrails: also folds full-width and ligature forms)
            or ``"NFC"`` (watermark detector: keeps compatibility characters).

    Returns:
        The normalised string. Lengths and offsets may differ from ``text``.
    """
    return fold_homoglyphs(strip_invisible(unicodedata.normalize(form, text)))
