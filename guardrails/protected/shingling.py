"""Normalisation, tokenisation and shingling of prose and source code.

Two token streams feed the same shingling step:

* **prose** — Unicode NFKC, removal of zero-width / format characters (``Cf``),
  homoglyph folding (all from :mod:`greenlist.normalize`), case folding, and
  word tokens ``[^\\W_]+`` so that punctuation, underscores and whitespace
  vanish. Trivial edits (curly quotes, ``ﬁ`` ligatures, a Cyrillic "о",
  doubled spaces, upper case) therefore do not change a single shingle.
* **code** — lexical tokens without comments and whitespace, with every
  identifier replaced by the placeholder ``ID`` and every literal (string,
  number, f-string) by ``LIT``; keywords, operators and punctuation stay.
  Python uses the standard :mod:`tokenize` module (Pygments' ``PythonLexer`` as
  a lenient fallback when the text is not valid Python, e.g. a truncated
  output); other languages use the Pygments lexer picked by file name.
  This is the token normalisation of token-based clone detectors (CCFinder,
  Kamiya et al. 2002; SourcererCC, Sajnani et al. 2016): a Type-2 clone (a copy
  with identifiers renamed and literals changed) yields the same stream.

Every token keeps the character offsets ``[start, end)`` of its source text in
the *original* string, so a match can be reported (and redacted) in the text
the user actually sent.

Shingles are contiguous token k-grams (Broder 1997, "On the resemblance and
containment of documents"), each hashed to an unsigned 32-bit integer: the
input width of datasketch's default ``affine32`` MinHash scheme.

Long module: prose and code normalisation feed one shingling routine; the code path (Pygments tokens, identifier placeholders) needs the prose helpers.
"""

from __future__ import annotations

import functools
import hashlib
import io
import keyword
import re
import tokenize
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from greenlist.normalize import fold_homoglyphs

Kind = Literal["prose", "code"]

ID_PLACEHOLDER = "ID"
LIT_PLACEHOLDER = "LIT"

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# Odd 64-bit multipliers for the polynomial combination of token hashes.
_MIX_RNG = np.random.default_rng(0x5EED_6EE4)
_MULTIPLIERS = _MIX_RNG.integers(1, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


@dataclass(frozen=True)
class TokenStream:
    """Normalised tokens of one text with their character offsets.

    Attributes:
        tokens: Normalised token strings, length ``n``.
        starts: ``int64[n]``, offset of each token's first character in the
            original text.
        ends: ``int64[n]``, offset one past each token's last character.
    """

    tokens: list[str]
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def _stream(tokens: list[str], starts: list[int], ends: list[int]) -> TokenStream:
    return TokenStream(tokens, np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64))


# --------------------------------------------------------------------------- prose


# Default-ignorable code points that are not format (Cf) characters: combining grapheme
# joiner, Hangul fillers, Khmer inherent vowels, Mongolian free variation selectors, variation
# selectors (Unicode DerivedCoreProperties.txt, Default_Ignorable_Code_Point). Inserted into a
# word they would split it; they never carry meaning in prose.
_IGNORABLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
)


def _ignorable(ch: str) -> bool:
    """True for invisible characters removed before word splitting (``Cf`` and default-ignorables)."""
    return ch in _IGNORABLE or unicodedata.category(ch) == "Cf" or 0xE0100 <= ord(ch) <= 0xE01EF


# Lower-case Cyrillic letters shaped like Latin small capitals; not in confusables.txt, but
# "нand" or "тhe" inside Latin text is an evasion, not Russian.
_SMALL_CAPS = str.maketrans({"н": "h", "т": "t", "к": "k", "м": "m", "в": "b", "г": "r", "п": "n"})


def _fold_word(word: str, latin_text: bool) -> str:
    """Fold the homoglyphs of one word (same length: every look-alike maps to one Latin letter).

    The word is folded when it has a Latin letter, when the whole text is mostly
    Latin, or when *every* non-ASCII letter of it has a Latin look-alike, so a
    word spelled entirely with Cyrillic look-alikes ("ѕее") cannot hide inside a
    text where the attacker swapped most letters. The last rule can fold a
    genuine Cyrillic word made only of look-alike letters ("сор"); both the
    corpus and the query are tokenised the same way, so this only merges two
    rare tokens and never hides a copy.
    """
    # A leading Latin letter makes fold_homoglyphs fold the whole word. Upper-case look-alikes are
    # ambiguous (Cyrillic "І" is listed as confusable with "l", its lower case "і" with "i"; "Н" looks
    # like "H" but "н" like nothing), so per character the lower-case form's look-alike wins, else the
    # original's.
    upper = fold_homoglyphs("a" + word)[1:]
    lower_src = word.lower()
    if len(lower_src) == len(word):
        lower = fold_homoglyphs("a" + lower_src)[1:]
        folded = "".join(lc if lc.isascii() else uc for lc, uc in zip(lower, upper, strict=False))
    else:
        folded = upper
    if latin_text or folded.isascii() or any(c.isascii() and c.isalpha() for c in word):
        return folded.translate(_SMALL_CAPS) if not folded.isascii() else folded
    return word


def prose_tokens(text: str) -> TokenStream:
    """Tokenise prose into case-folded, NFKC-normalised words with source offsets.

    Args:
        text: Any Unicode string.

    Returns:
        A :class:`TokenStream` of words (letters and digits only); offsets index
        into ``text``. Format characters (zero-width spaces, bidi controls, soft
        hyphens) and other default-ignorable characters (combining grapheme
        joiner, variation selectors, Hangul fillers) are removed *before* word
        splitting, so "pro\\u200btected" yields the single word "protected";
        Cyrillic/Greek look-alikes are folded to Latin letters (:func:`_fold_word`).
    """
    latin = True
    if text.isascii():
        norm, src = text, None
    else:
        chars: list[str] = []
        src_list: list[int] = []
        for i, ch in enumerate(text):
            if ch.isascii():
                chars.append(ch)
                src_list.append(i)
                continue
            if _ignorable(ch):
                continue
            for c in unicodedata.normalize("NFKC", ch):
                chars.append(c)
                src_list.append(i)
        norm, src = "".join(chars), src_list
        letters = [c for c in norm if c.isalpha()]
        latin = sum(c.isascii() for c in letters) * 2 > len(letters)
    tokens: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for m in _WORD.finditer(norm):
        word = m.group(0)
        if not word.isascii():
            word = _fold_word(word, latin)
        tokens.append(word.casefold())
        if src is None:
            starts.append(m.start())
            ends.append(m.end())
        else:
            starts.append(src[m.start()])
            ends.append(src[m.end() - 1] + 1)
    return _stream(tokens, starts, ends)


# --------------------------------------------------------------------------- code

_PY_DROP = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}
_PY_FSTRING = {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def python_tokens(text: str) -> TokenStream:
    """Tokenise Python source with :mod:`tokenize`; identifiers → ``ID``, literals → ``LIT``.

    Args:
        text: Python source code.

    Returns:
        A :class:`TokenStream` without comments, newlines or indentation tokens.
        Keywords (including ``True``/``None``) and operators keep their text.

    Raises:
        tokenize.TokenError, SyntaxError: when ``text`` is not tokenisable Python
            (an unterminated string or bracket); :func:`code_tokens` catches this
            and falls back to Pygments.
    """
    lines = _line_offsets(text)
    tokens: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    in_fstring = 0
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in _PY_DROP:
            continue
        start = lines[tok.start[0] - 1] + tok.start[1]
        end = lines[tok.end[0] - 1] + tok.end[1]
        if tok.type in _PY_FSTRING or in_fstring:
            # Python >= 3.12 splits f-strings; collapse the whole f-string to LIT.
            name = tokenize.tok_name[tok.type]
            if name == "FSTRING_START":
                in_fstring += 1
                if in_fstring == 1:
                    tokens.append(LIT_PLACEHOLDER)
                    starts.append(start)
                    ends.append(end)
            elif name == "FSTRING_END":
                in_fstring -= 1
                ends[-1] = end
            continue
        if tok.type == tokenize.NAME:
            value = tok.string if keyword.iskeyword(tok.string) else ID_PLACEHOLDER
        elif tok.type in (tokenize.STRING, tokenize.NUMBER):
            value = LIT_PLACEHOLDER
        else:
            value = tok.string
        tokens.append(value)
        starts.append(start)
        ends.append(end)
    return _stream(tokens, starts, ends)


@functools.cache
def _lexer(language: str):
    from pygments.lexers import get_lexer_by_name

    return get_lexer_by_name(language, stripnl=False, ensurenl=False)


def pygments_tokens(text: str, language: str) -> TokenStream:
    """Tokenise source code with the Pygments lexer for ``language``.

    Args:
        text: Source code (any amount of surrounding prose is tolerated).
        language: A Pygments lexer alias (``"python"``, ``"javascript"``, ``"c"``...).

    Returns:
        A :class:`TokenStream`: ``Name.*`` → ``ID`` (keywords and builtin
        constants stay), ``Literal.*`` → one ``LIT`` per literal (adjacent string
        pieces merged), comments and whitespace dropped, other tokens verbatim.

    Raises:
        pygments.util.ClassNotFound: for an unknown language alias; pass one of
            ``pygments.lexers.get_all_lexers()`` aliases.
    """
    from pygments.token import Comment, Keyword, Literal, Name, Text, Whitespace

    tokens: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    prev_lit = False
    for pos, ttype, value in _lexer(language).get_tokens_unprocessed(text):
        if ttype in Comment or ttype in Whitespace or (ttype in Text and not value.strip()):
            prev_lit = False if ttype in Comment else prev_lit
            continue
        end = pos + len(value)
        if ttype in Literal:
            if prev_lit:
                ends[-1] = end
                continue
            tokens.append(LIT_PLACEHOLDER)
            prev_lit = True
        else:
            prev_lit = False
            if ttype in Keyword:
                tokens.append(value)
            elif ttype in Name:
                tokens.append(value if keyword.iskeyword(value) and language == "python" else ID_PLACEHOLDER)
            else:
                tokens.append(value.strip())
        starts.append(pos)
        ends.append(end)
    return _stream(tokens, starts, ends)


def language_for_path(path: str | Path) -> str:
    """Return the Pygments lexer alias for a source file, ``"python"`` for ``*.py``.

    Raises:
        ValueError: when Pygments has no lexer for the file name; rename the
            file with a standard extension.
    """
    p = Path(path)
    if p.suffix in (".py", ".pyi", ".pyw"):
        return "python"
    from pygments.lexers import get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        return get_lexer_for_filename(p.name).aliases[0]
    except ClassNotFound:
        raise ValueError(f"no Pygments lexer for {p.name!r}; give it a standard source extension") from None


def code_tokens(text: str, language: str = "python") -> TokenStream:
    """Tokenise code in ``language`` (Python via :mod:`tokenize`, else Pygments).

    Python text that :mod:`tokenize` rejects (model outputs are often truncated
    or wrapped in prose) is lexed with Pygments' lenient ``PythonLexer``, which
    maps to the same token vocabulary.

    Args:
        text: Source code.
        language: Pygments lexer alias (``"python"`` by default).

    Returns:
        A :class:`TokenStream` of normalised code tokens.

    Raises:
        pygments.util.ClassNotFound: for an unknown language alias.
    """
    if language == "python":
        try:
            return python_tokens(text)
        except (tokenize.TokenError, SyntaxError, IndentationError):
            return pygments_tokens(text, "python")
    return pygments_tokens(text, language)


def tokens_for(text: str, kind: Kind, language: str = "python") -> TokenStream:
    """Dispatch to :func:`prose_tokens` or :func:`code_tokens` by ``kind``.

    Args:
        text: Text to tokenise.
        kind: ``"prose"`` or ``"code"``.
        language: Lexer alias for code.

    Returns:
        The :class:`TokenStream`.

    Raises:
        ValueError: for a kind other than ``"prose"`` or ``"code"``.
    """
    if kind == "prose":
        return prose_tokens(text)
    if kind == "code":
        return code_tokens(text, language)
    raise ValueError(f"unknown corpus kind {kind!r}; use 'prose' or 'code'")


# --------------------------------------------------------------------------- shingles

_token_hash_cache: dict[str, int] = {}


def _token_hash(token: str) -> int:
    h = _token_hash_cache.get(token)
    if h is None:
        h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        if len(_token_hash_cache) < 2_000_000:
            _token_hash_cache[token] = h
    return h


def shingle_hashes(tokens: Sequence[str], k: int) -> np.ndarray:
    """Hash every contiguous token k-gram (shingle) to an unsigned 32-bit integer.

    Args:
        tokens: ``n`` normalised tokens.
        k: Shingle size in tokens (1 ≤ k ≤ 64).

    Returns:
        ``uint32[max(n - k + 1, 0)]``; element ``i`` is the hash of
        ``tokens[i:i+k]``. A text shorter than ``k`` (but not empty) gives one
        shingle made of all its tokens, so short texts still have a signature.

    Raises:
        ValueError: when ``k`` is outside [1, 64].
    """
    if not 1 <= k <= 64:
        raise ValueError(f"shingle size k={k} must be in [1, 64]")
    n = len(tokens)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    th = np.fromiter((_token_hash(t) for t in tokens), dtype=np.uint64, count=n)
    k_eff = min(k, n)
    m = n - k_eff + 1
    acc = np.zeros(m, dtype=np.uint64)
    for i in range(k_eff):
        acc += th[i : i + m] * _MULTIPLIERS[i]
    # MurmurHash3 fmix64 finaliser, keep the top 32 bits.
    acc ^= acc >> np.uint64(33)
    acc *= np.uint64(0xFF51AFD7ED558CCD)
    acc ^= acc >> np.uint64(33)
    acc *= np.uint64(0xC4CEB9FE1A85EC53)
    acc ^= acc >> np.uint64(33)
    return (acc >> np.uint64(32)).astype(np.uint32)


def file_sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``: the content hash that makes re-adding a file a no-op."""
    return hashlib.sha256(data).hexdigest()
