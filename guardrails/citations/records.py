"""Citation records: loading (BibTeX, CSL-JSON, JSONL) and normalisation of titles and names.

A :class:`CitationRecord` is one verified work of the operator's citation
database. Loaders turn the three supported formats into records:

* **BibTeX** via ``bibtexparser`` 2.x (co-authors split on ``and``; LaTeX
  accents and commands decoded with ``pylatexenc``);
* **CSL-JSON** (the format of Zotero / citeproc: ``title``, ``author`` as
  ``{family, given}``, ``issued.date-parts``, ``container-title``, ``DOI``,
  ``URL``), either a JSON array or one item per line;
* **JSONL** with Greenlist's flat schema: ``title, authors[], year, venue,
  doi, url`` (plus optional ``id, abstract, arxiv, type``).

Normalisation (:func:`norm_text`, :func:`surname_key`) makes comparison
robust to Unicode forms, accents, case, punctuation and name order
("Last, First" vs "First Last").

Long module: the three input formats (BibTeX, CSL-JSON, JSONL) normalise into one record type; the format readers share the normalisation helpers.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Lower-case name particles that belong to the family name ("van der Berg", "de Fremery").
_PARTICLES = frozenset("van von der den de del della di da das dos du la le ter ten zu bin al el st".split())
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
_DOI_RE = re.compile(r"10\.\d{4,9}/[^\s\"'<>]+", re.IGNORECASE)
_ARXIV_NEW = re.compile(r"(?<![\d.])(\d{4}\.\d{4,5})(?:v\d+)?(?![\d])")
_ARXIV_OLD = re.compile(r"\b([a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?\b", re.IGNORECASE)


@dataclass
class CitationRecord:
    """One verified work in a citation database.

    Attributes:
        id: Stable identifier (BibTeX key, CSL ``id`` or JSONL ``id``); made up
            from the row number when the source has none.
        title: Title as written in the source (LaTeX decoded).
        authors: Author display names, "First Last" order.
        year: Publication year, or ``None`` when unknown.
        venue: Journal / proceedings / publisher, or ``None``.
        doi: DOI in canonical lower-case form (no ``https://doi.org/``), or ``None``.
        url: URL, or ``None``.
        arxiv: arXiv identifier (``2101.00001`` or ``cs/0101001``), or ``None``.
        abstract: Abstract text when present (used by the embedding index).
        type: Entry type (``article``, ``inproceedings``, ...).
        source: Name of the file or database the record came from.
    """

    id: str
    title: str
    authors: list[str] = field(default_factory=list)
    year: int | None = None
    venue: str | None = None
    doi: str | None = None
    url: str | None = None
    arxiv: str | None = None
    abstract: str | None = None
    type: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (drops empty optional fields)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, [], "")}

    def brief(self) -> dict[str, Any]:
        """Short JSON form used in guardrail details: id, title, authors, year, venue, doi, url."""
        out = {"id": self.id, "title": self.title, "authors": self.authors, "year": self.year}
        for key in ("venue", "doi", "url", "arxiv"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CitationRecord:
        """Build a record from :meth:`to_dict` output (unknown keys are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- normalisation


@functools.lru_cache(maxsize=1)
def _latex_decoder():
    from pylatexenc.latex2text import LatexNodes2Text

    return LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=False)


def decode_latex(text: str) -> str:
    """Decode LaTeX accents and commands (``M{\\"u}ller`` -> ``Müller``, ``\\&`` -> ``&``).

    Strings without a backslash or brace are returned unchanged (fast path).
    Falls back to removing braces when pylatexenc cannot parse the input.
    """
    if "\\" not in text and "{" not in text:
        return text
    try:
        out = _latex_decoder().latex_to_text(text)
    except Exception:  # malformed LaTeX: keep the text readable
        out = text.replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", out).strip()


def fold_char(ch: str) -> str:
    """Fold one character for matching: accents removed, lower case, non-alphanumerics to space.

    Returns a string of length 0, 1 or more (ligatures such as "ß" -> "ss").
    """
    if ch.isascii():
        return ch.lower() if ch.isalnum() else " "
    decomposed = unicodedata.normalize("NFKD", ch)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    kept = kept.casefold()
    return "".join(c if c.isalnum() else " " for c in kept)


def norm_text(text: str) -> str:
    """Normalise a title or name for comparison.

    NFKD with accents removed, case-folded, every non-alphanumeric character
    turned into a space, whitespace collapsed. ``"Über die Theorie: A Study"``
    becomes ``"uber die theorie a study"``.
    """
    return " ".join("".join(fold_char(c) for c in text).split())


def norm_with_map(text: str) -> tuple[str, list[int]]:
    """Like :func:`norm_text`, also returning, for each output character, its index in ``text``.

    Returns:
        ``(normalised, positions)`` with ``len(positions) == len(normalised)``;
        ``positions[i]`` is the offset in ``text`` of the character that
        produced ``normalised[i]``. Used to map fuzzy alignments back to spans.
    """
    out: list[str] = []
    pos: list[int] = []
    last_space = True
    for i, ch in enumerate(text):
        for c in fold_char(ch):
            if c == " ":
                if last_space:
                    continue
                last_space = True
            else:
                last_space = False
            out.append(c)
            pos.append(i)
    while out and out[-1] == " ":
        out.pop()
        pos.pop()
    return "".join(out), pos


def split_name(name: str) -> tuple[str, str]:
    """Split an author name into ``(given, family)``.

    Handles "Last, First" (also "Last, Jr., First"), "First Last", name
    particles ("Anna van der Berg" -> family "van der Berg") and suffixes
    ("John Smith Jr." -> family "Smith"). A single word is a family name.
    """
    name = " ".join(decode_latex(name).split())
    if "," in name:
        parts = [p.strip() for p in name.split(",")]
        family = parts[0]
        given = " ".join(p for p in parts[1:] if p.lower().strip(".") not in _SUFFIXES)
        return given, family
    words = name.split()
    while len(words) > 1 and words[-1].lower().strip(".") in _SUFFIXES:
        words.pop()
    if len(words) <= 1:
        return "", " ".join(words)
    start = len(words) - 1
    while start > 1 and words[start - 1].lower() in _PARTICLES:
        start -= 1
    return " ".join(words[:start]), " ".join(words[start:])


def surname_key(name: str) -> str:
    """Comparison key of an author's family name: the last normalised word of it.

    ``"Bar-Ilan, Judit"`` -> ``"ilan"``, ``"Wayne de Fremery"`` -> ``"fremery"``,
    ``"Müller"`` -> ``"muller"``. The last word is used because citation styles
    disagree on particles and hyphens but always keep it.
    """
    family = split_name(name)[1]
    words = norm_text(family).split()
    return words[-1] if words else ""


def display_name(name: str) -> str:
    """Return ``name`` in "First Last" order with LaTeX decoded."""
    given, family = split_name(name)
    return f"{given} {family}".strip()


def canonical_doi(value: str | None) -> str | None:
    """Canonical DOI: lower case, without resolver prefix or trailing punctuation; ``None`` if absent."""
    if not value:
        return None
    match = _DOI_RE.search(str(value))
    if not match:
        return None
    return match.group(0).rstrip(".,;)]}>").lower()


def canonical_arxiv(value: str | None) -> str | None:
    """Canonical arXiv id (version suffix dropped) found in ``value``, or ``None``."""
    if not value:
        return None
    text = str(value)
    match = _ARXIV_NEW.search(text) or _ARXIV_OLD.search(text)
    return match.group(1).lower() if match else None


def canonical_url(value: str | None) -> str | None:
    """Canonical URL for exact lookup: scheme, ``www.`` and trailing slash removed, lower case."""
    if not value:
        return None
    url = str(value).strip().rstrip(".,;)]}>")
    url = re.sub(r"^[a-z]+://", "", url, flags=re.IGNORECASE)
    url = re.sub(r"^www\.", "", url, flags=re.IGNORECASE)
    return url.rstrip("/").lower() or None


def _year(value: Any) -> int | None:
    if value is None:
        return None
    match = re.search(r"\b(1[5-9]\d\d|20\d\d)\b", str(value))
    return int(match.group(1)) if match else None


def make_record(data: dict[str, Any], default_id: str, source: str | None = None) -> CitationRecord | None:
    """Build a normalised record from a flat mapping (Greenlist JSONL schema).

    Args:
        data: Mapping with ``title`` and optional ``authors`` (list of names or
            one ``" and "``-separated string), ``year``, ``venue``, ``doi``,
            ``url``, ``arxiv``, ``abstract``, ``id``, ``type``.
        default_id: Identifier used when ``data`` has no ``id``.
        source: Source name stored on the record.

    Returns:
        The record, or ``None`` when it has no usable title.
    """
    title = decode_latex(str(data.get("title") or "")).strip()
    if not title:
        return None
    authors = data.get("authors") or data.get("author") or []
    if isinstance(authors, str):
        authors = [a for a in re.split(r"\s+and\s+", authors) if a.strip()]
    names = []
    for author in authors:
        if isinstance(author, dict):  # CSL-like dict inside JSONL
            author = " ".join(x for x in (author.get("given"), author.get("family")) if x) or author.get("literal", "")
        if str(author).strip():
            names.append(display_name(str(author)))
    url = data.get("url") or None
    doi = canonical_doi(data.get("doi")) or (canonical_doi(url) if url and "doi" in str(url).lower() else None)
    arxiv = (
        canonical_arxiv(data.get("arxiv") or data.get("eprint")) if (data.get("arxiv") or data.get("eprint")) else None
    )
    if arxiv is None and url and "arxiv.org/abs/" in str(url).lower():
        arxiv = canonical_arxiv(url)
    venue = data.get("venue") or data.get("journal") or data.get("booktitle") or data.get("publisher")
    return CitationRecord(
        id=str(data.get("id") or default_id),
        title=title,
        authors=names,
        year=_year(data.get("year")),
        venue=decode_latex(str(venue)) if venue else None,
        doi=doi,
        url=str(url) if url else None,
        arxiv=arxiv,
        abstract=decode_latex(str(data["abstract"])) if data.get("abstract") else None,
        type=data.get("type") or data.get("ENTRYTYPE"),
        source=source,
    )


# --------------------------------------------------------------------------- loaders


def load_bibtex_string(text: str, source: str | None = None) -> list[CitationRecord]:
    """Parse BibTeX source with ``bibtexparser`` 2.x into records.

    Args:
        text: BibTeX source (``@article{...}`` entries; ``@string`` macros resolved).
        source: Source name stored on each record.

    Returns:
        One record per entry that has a title; entries without a title and
        blocks the parser could not read are skipped.

    Raises:
        ValueError: when the text contains no parsable entry at all (check
            that it is BibTeX, e.g. not CSL-JSON saved as ``.bib``).
    """
    import bibtexparser
    from bibtexparser import middlewares as mw

    library = bibtexparser.parse_string(
        text,
        append_middleware=[
            mw.NormalizeFieldKeys(allow_inplace_modification=True),
            mw.SeparateCoAuthors(allow_inplace_modification=True),
        ],
    )
    if not library.entries and text.strip():
        raise ValueError(
            "no BibTeX entries could be parsed; check the file is BibTeX "
            f"({len(library.failed_blocks)} block(s) failed to parse)"
        )
    records = []
    for entry in library.entries:
        fields = {k.lower(): f.value for k, f in entry.fields_dict.items()}
        authors = fields.get("author") or fields.get("editor") or []
        if isinstance(authors, str):
            authors = re.split(r"\s+and\s+", authors)
        data = {
            "id": entry.key,
            "type": entry.entry_type.lower(),
            "title": fields.get("title"),
            "authors": [decode_latex(a) for a in authors],
            "year": fields.get("year") or fields.get("date"),
            "venue": fields.get("journal") or fields.get("booktitle") or fields.get("publisher"),
            "doi": fields.get("doi"),
            "url": fields.get("url"),
            "abstract": fields.get("abstract"),
        }
        prefix = str(fields.get("archiveprefix") or fields.get("eprinttype") or "").lower()
        if fields.get("eprint") and (prefix == "arxiv" or canonical_arxiv(fields["eprint"])):
            data["arxiv"] = fields["eprint"]
        record = make_record(data, entry.key, source)
        if record is not None:
            records.append(record)
    return records


def csl_to_flat(item: dict[str, Any]) -> dict[str, Any]:
    """Convert one CSL-JSON item to Greenlist's flat JSONL schema."""
    authors = []
    for person in item.get("author") or []:
        if "family" in person:
            authors.append(f"{person['family']}, {person.get('given', '')}".rstrip(", "))
        elif person.get("literal"):
            authors.append(person["literal"])
    year = None
    issued = item.get("issued") or {}
    parts = issued.get("date-parts") if isinstance(issued, dict) else None
    if parts and parts[0]:
        year = parts[0][0]
    elif isinstance(issued, dict) and issued.get("raw"):
        year = issued["raw"]
    title = item.get("title")
    if isinstance(title, list):
        title = title[0] if title else None
    venue = item.get("container-title")
    if isinstance(venue, list):
        venue = venue[0] if venue else None
    return {
        "id": item.get("id"),
        "type": item.get("type"),
        "title": title,
        "authors": authors,
        "year": year,
        "venue": venue or item.get("publisher"),
        "doi": item.get("DOI") or item.get("doi"),
        "url": item.get("URL") or item.get("url"),
        "abstract": item.get("abstract"),
    }


def _is_csl(item: dict[str, Any]) -> bool:
    return (
        "issued" in item
        or "container-title" in item
        or "DOI" in item
        or (isinstance(item.get("author"), list) and item["author"] and isinstance(item["author"][0], dict))
    )


def iter_json_items(text: str) -> Iterator[dict[str, Any]]:
    """Yield JSON objects from a JSON array, a single object, or JSON Lines text.

    Raises:
        ValueError: with the line number when a JSONL line is not valid JSON.
    """
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = json.loads(text)
        for item in data:
            if isinstance(item, dict):
                yield item
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {lineno}: not valid JSON ({exc.msg}); expected one object per line") from None
        if isinstance(item, dict):
            yield item


def load_json_records(text: str, source: str | None = None) -> list[CitationRecord]:
    """Parse CSL-JSON (array or lines) or Greenlist JSONL into records (format detected per item)."""
    records = []
    for i, item in enumerate(iter_json_items(text)):
        flat = csl_to_flat(item) if _is_csl(item) else item
        record = make_record(flat, f"{source or 'rec'}-{i}", source)
        if record is not None:
            records.append(record)
    return records


def load_file(path: str | Path) -> list[CitationRecord]:
    """Load records from a BibTeX (``.bib``), CSL-JSON (``.json``) or JSONL (``.jsonl``) file.

    The format is chosen by extension, falling back to content sniffing
    (``@`` first means BibTeX, ``[`` or ``{`` means JSON).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is in none of the supported formats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"citation file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    first = text.lstrip()[:1]
    if suffix in (".bib", ".bibtex") or (suffix not in (".json", ".jsonl", ".ndjson") and first == "@"):
        return load_bibtex_string(text, source=path.name)
    if suffix in (".json", ".jsonl", ".ndjson", ".csl") or first in ("[", "{"):
        return load_json_records(text, source=path.name)
    raise ValueError(f"{path}: unknown citation format; use BibTeX (.bib), CSL-JSON (.json) or JSONL (.jsonl)")


def load_files(paths: Iterable[str | Path]) -> list[CitationRecord]:
    """Load and concatenate records from several files (see :func:`load_file`)."""
    out: list[CitationRecord] = []
    for path in paths:
        out.extend(load_file(path))
    return out
