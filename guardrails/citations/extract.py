"""Find citations in generated text, each with its character span.

Recognised forms (spans are ``[start, end)`` offsets into the scanned text):

* **reference-list entries**: lines of a numbered list (``[1] ...``,
  ``1. ...``, ``1) ...``), bullets, lines under a "References" /
  "Bibliography" / "Works cited" heading, and free-standing lines shaped like
  APA (``Surname, I., ... (2020). Title.``) or ACM (``First Last, ... 2020. Title.``)
  entries. DOIs, arXiv ids and URLs inside an entry belong to the entry;
* **identifiers** in running text: DOIs (``10.xxxx/...``, ``doi:``,
  ``https://doi.org/...``), arXiv ids (``arXiv:2101.00001``,
  ``arxiv.org/abs/...``) and other URLs;
* **author-year references**: narrative ``Smith et al. (2020)``,
  ``Smith and Jones (2020)`` and parenthetical ``(Smith and Jones, 2020;
  Lee et al., 2019)`` -- one citation per reference;
* **titles** in double quotes (straight or curly) or Markdown italics
  (``*...*``, ``_..._``). A title in the same sentence as an author-year
  reference is merged with it into one citation.

Extraction is regex-based and linear in the text length; it never raises.

Long module: one extractor per citation style (numeric, author-year, DOI/arXiv/URL, reference lists) sharing the span bookkeeping; split, they would share private helpers across files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from guardrails.citations.records import canonical_arxiv, canonical_doi, norm_text, surname_key

YEAR = r"(?:1[6-9]\d\d|20\d\d)"
_YEAR_RE = re.compile(rf"(?<![\d./\-])({YEAR})[a-z]?(?![\d/])")
_DOI_RE = re.compile(r"(?:https?://(?:dx\.)?doi\.org/|\bdoi:\s*)?\b(10\.\d{4,9}/[^\s\"'<>\]]+)", re.IGNORECASE)
_ARXIV_RE = re.compile(
    r"(?:arXiv:\s*|https?://arxiv\.org/(?:abs|pdf)/)(\d{4}\.\d{4,5}(?:v\d+)?|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:\.pdf)?",
    re.IGNORECASE,
)
_URL_RE = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'\]]+", re.IGNORECASE)
_NUMBERED = re.compile(r"^[ \t]*(?:\[\d{1,3}\]|\(\d{1,3}\)|\d{1,3}[.)]|[-*\u2022])[ \t]+")
_HEADING = re.compile(
    r"^[ \t#*]*(references|bibliography|works cited|literature cited|sources|citations|further reading)[ \t:*]*$",
    re.IGNORECASE,
)
_APA_HEAD = re.compile(rf"^[ \t]*[^\W\d_][^,\n]{{0,60}},\s*(?:[^\W\d_]\.\s*)+.*?\(\s*{YEAR}[a-z]?\s*\)", re.UNICODE)
_ACM_HEAD = re.compile(rf"^[ \t]*[^\W\d_][^\n]{{2,400}}?\.\s+{YEAR}[a-z]?\.\s+\S", re.UNICODE)

_PARTICLE = r"(?:(?:van|von|de|der|den|du|da|di|le|la|del|della|ter|ten|dos|das)\s+)"
_NAME = rf"{_PARTICLE}*[^\W\d_][^\W\d_'’\-]*(?:[-'’][^\W\d_]+)*"
_NAMES = rf"{_NAME}(?:\s+et\s+al\.?|\s+(?:and|&)\s+{_NAME}|(?:,\s+{_NAME})+,?\s+(?:and|&)\s+{_NAME})?"
_NARRATIVE = re.compile(rf"(?P<names>{_NAMES})\s*\(\s*(?P<year>{YEAR})[a-z]?\s*\)", re.UNICODE)
_PAREN = re.compile(r"\(([^()\n]{6,400})\)")
_PAREN_PART = re.compile(
    rf"^\s*(?:(?:e\.g\.|i\.e\.|see(?:\s+also)?|cf\.)\s*,?\s*)?(?P<names>{_NAMES})\s*,?\s+(?P<year>{YEAR})[a-z]?\s*$",
    re.UNICODE,
)
_QUOTED = re.compile(
    r"“([^”\n]{8,300})”|\"([^\"\n]{8,300})\"|(?<![*\w])\*([^*\n]{8,300})\*(?![*\w])|(?<!\w)_([^_\n]{8,300})_(?!\w)"
)
_NOT_NAMES = frozenset(
    "in the a an this that these see since until by from table figure fig section chapter eq equation "
    "version python published updated retrieved accessed copyright circa between after before during "
    "january february march april may june july august september october november december "
    "spring summer autumn fall winter q1 q2 q3 q4 it we they he she our their".split()
)
_TITLE_CUE_BEFORE = re.compile(
    r"\b(?:paper|article|study|book|chapter|titled|entitled|publication|report|thesis|survey|preprint|"
    r"monograph|in|see|cf\.)\s*[:,]?\s*$",
    re.IGNORECASE,
)
_PRONOUNS = frozenset("i you me my your we us our he she him her".split())


def _standalone_title(title: str, raw: str, before: str) -> bool:
    """Whether a quoted / italic string without an author-year partner is presented as a work's title.

    True after a cue ("the paper", "titled", "in") or when the string is in
    Title Case (>= 80% of its words capitalised or short function words, at
    least 4 words) and does not read like dialogue (ends in ``, . ! ?`` inside
    the quotes, or uses first/second-person pronouns).
    """
    words = re.findall(r"[^\W\d_][\w'’\-]*", title)
    if len(words) < 3:
        return False
    dialogue = raw.rstrip()[-1:] in ",.!?" or any(w.lower() in _PRONOUNS for w in words)
    caps = sum(1 for w in words if w[0].isupper() or len(w) <= 3) / len(words)
    if _TITLE_CUE_BEFORE.search(before):
        return not dialogue or caps >= 0.8
    return not dialogue and len(words) >= 4 and caps >= 0.8


@dataclass
class Citation:
    """One citation found in a text.

    Attributes:
        text: The citation as written (``text[start:end]`` of the scanned text).
        start: Start offset (inclusive) in the scanned text.
        end: End offset (exclusive).
        kind: ``"reference"`` (list entry), ``"doi"``, ``"arxiv"``, ``"url"``,
            ``"author_year"``, ``"author_year_title"`` or ``"title"``.
        doi: Canonical DOI found in the citation, if any.
        arxiv: Canonical arXiv id, if any.
        url: URL (other than DOI / arXiv links), if any.
        title: Claimed title when the extractor could delimit one (a guess for
            reference entries; verification re-aligns titles itself).
        title_span: ``(start, end)`` of ``title`` relative to ``text``, if any.
        names: The author part as written (e.g. ``"Smith et al."``), if any.
        author_keys: Surname keys of the named authors, in order.
        et_al: Whether the author list is truncated (``et al.`` / ``...``).
        year: Claimed year (first one found outside the title and ids), if any.
        years: Every year-like number outside title and ids.
        line_start: For list entries, start of the whole line (for stripping).
        line_end: For list entries, end of the line including its newline.
    """

    text: str
    start: int
    end: int
    kind: str
    doi: str | None = None
    arxiv: str | None = None
    url: str | None = None
    title: str | None = None
    title_span: tuple[int, int] | None = None
    names: str | None = None
    author_keys: list[str] = field(default_factory=list)
    et_al: bool = False
    year: int | None = None
    years: list[int] = field(default_factory=list)
    line_start: int | None = None
    line_end: int | None = None

    @property
    def span(self) -> list[int]:
        """``[start, end)`` as a two-element list (JSON form)."""
        return [self.start, self.end]


def _is_name(names: str) -> bool:
    """Whether the first name of an author string looks like a surname (capitalised, not a common word)."""
    words = [
        w
        for w in names.split()
        if w.lower()
        not in (
            "van",
            "von",
            "der",
            "den",
            "de",
            "du",
            "da",
            "di",
            "le",
            "la",
            "del",
            "della",
            "ter",
            "ten",
            "dos",
            "das",
        )
    ]
    core = words[0].strip(",") if words else ""
    return len(core) > 1 and core[0].isupper() and core.lower() not in _NOT_NAMES


def parse_names(names: str) -> tuple[list[str], bool]:
    """Surname keys of an author string such as ``"Smith, Lee, and Jones"`` or ``"Smith et al."``.

    Returns:
        ``(keys, et_al)`` -- surname keys in order and whether the list is truncated.
    """
    et_al = bool(re.search(r"\bet\s+al\b|\.\.\.|…|\bothers\b", names))
    cleaned = re.sub(r"\bet\s+al\.?|\bothers\b", "", names)
    parts = [p for p in re.split(r",|\s+and\s+|\s*&\s*", cleaned) if p.strip()]
    return [surname_key(p.strip()) for p in parts if surname_key(p.strip())], et_al


def _ids_in(text: str) -> tuple[str | None, str | None, str | None, list[tuple[int, int]]]:
    """DOI, arXiv id, other URL found in ``text`` and the spans they occupy."""
    spans: list[tuple[int, int]] = []
    doi = arxiv = url = None
    for m in _DOI_RE.finditer(text):
        doi = doi or canonical_doi(m.group(1))
        spans.append(m.span())
    for m in _ARXIV_RE.finditer(text):
        arxiv = arxiv or canonical_arxiv(m.group(1))
        spans.append(m.span())
    for m in _URL_RE.finditer(text):
        spans.append(m.span())
        low = m.group(0).lower()
        if "doi.org/" in low or "arxiv.org/" in low:
            continue
        url = url or m.group(0).rstrip(".,;)")
    return doi, arxiv, url, spans


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def entry_years(text: str, exclude: list[tuple[int, int]]) -> list[int]:
    """Year-like numbers (1600-2099) in ``text`` outside the ``exclude`` spans, in order."""
    return [int(m.group(1)) for m in _YEAR_RE.finditer(text) if not _inside(m.start(), exclude)]


def claimed_years(text: str, exclude: list[tuple[int, int]]) -> list[int]:
    """The year(s) a reference entry gives as its publication year.

    Venue names often contain years of their own ("TREC 2004", "November
    16-19, 2004"), so the year in the entry's year slot wins: the earliest
    parenthesised ``(2020)`` or ACM-style ``. 2020.``; else a year closing the
    entry (``..., 2020.``, IEEE); else every year-like number.
    """
    slots = []
    for m in re.finditer(rf"\(\s*({YEAR})[a-z]?\s*\)|(?:^|\.\s)({YEAR})[a-z]?\.(?:\s|$)", text):
        g = 1 if m.group(1) else 2
        if not _inside(m.start(g), exclude):
            slots.append((m.start(g), int(m.group(g))))
    if slots:
        return [min(slots)[1]]
    m = re.search(rf"(?:,|\.)\s*({YEAR})[a-z]?\s*[.)]?\s*$", _strip_spans(text, exclude))
    if m:
        return [int(m.group(1))]
    return entry_years(text, exclude)


def _strip_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the ``spans`` blanked out (same length), trailing blanks and punctuation removed."""
    chars = list(text)
    for a, b in spans:
        for i in range(max(0, a), min(len(chars), b)):
            chars[i] = " "
    return "".join(chars).rstrip(" .;,")


def guess_entry_title(text: str) -> tuple[int, int] | None:
    """Best guess of the title span inside one reference entry, or ``None``.

    Tries, in order: a quoted or italicised segment (IEEE, Markdown); the
    sentence after ``(2020).`` (APA) or ``. 2020.`` (ACM); otherwise the
    longest ``". "``-delimited segment that holds no year.
    """
    m = _QUOTED.search(text)
    if m:
        g = next(i for i in range(1, 5) if m.group(i) is not None)
        a, b = m.span(g)
        while b > a and text[b - 1] in ",.;: ":
            b -= 1
        return a, b
    m = re.search(rf"\(\s*{YEAR}[a-z]?\s*\)\.?\s+|(?:^|\.\s+){YEAR}[a-z]?\.\s+", text)
    if m:
        a = m.end()
        end = re.search(r"(?<=[^\s.][^\s.])[.?!](?=\s|$)", text[a:])
        b = a + end.end() if end else len(text)
        if text[b - 1] == ".":
            b -= 1
        if b - a >= 4:
            return a, b
    best = None
    pos = 0
    for seg in re.split(r"(?<=[^\s.][^\s.])\.\s+", text):
        a = text.find(seg, pos)
        pos = a + len(seg)
        s = seg.strip().rstrip(".")
        if (
            len(s.split()) >= 3
            and not _YEAR_RE.search(s)
            and not _URL_RE.search(s)
            and (best is None or len(s) > best[1] - best[0])
        ):
            best = (a, a + len(s))
    return best


def _entry(line: str, offset: int, line_start: int, line_end: int) -> Citation:
    marker = _NUMBERED.match(line)
    body_start = marker.end() if marker else len(line) - len(line.lstrip())
    body = line[body_start:].rstrip()
    start = offset + body_start
    doi, arxiv, url, id_spans = _ids_in(body)
    tspan = guess_entry_title(body)
    excl = id_spans + ([tspan] if tspan else [])
    years = claimed_years(body, excl)
    head = body[: tspan[0]] if tspan else body
    keys, et_al = parse_names(re.sub(rf"\(?\s*{YEAR}[a-z]?\s*\)?\.?", " ", head)) if tspan else ([], False)
    return Citation(
        text=body,
        start=start,
        end=start + len(body),
        kind="reference",
        doi=doi,
        arxiv=arxiv,
        url=url,
        title=body[tspan[0] : tspan[1]] if tspan else None,
        title_span=tspan,
        names=head.strip() or None,
        author_keys=keys,
        et_al=et_al,
        year=years[0] if years else None,
        years=years,
        line_start=line_start,
        line_end=line_end,
    )


def _looks_like_entry(body: str, in_section: bool, numbered: bool) -> bool:
    has_year = bool(_YEAR_RE.search(body))
    has_id = bool(_DOI_RE.search(body) or _ARXIV_RE.search(body))
    words = len(body.split())
    if words < 4 and not has_id:
        return False
    if in_section:
        return has_year or has_id
    if numbered:
        return has_id or (
            has_year
            and (
                bool(_QUOTED.search(body))
                or bool(_APA_HEAD.match(body))
                or bool(_ACM_HEAD.match(body))
                or body.count(".") >= 3
            )
        )
    return bool(_APA_HEAD.match(body) or _ACM_HEAD.match(body)) and words <= 120


def extract_citations(text: str) -> list[Citation]:
    """Find every citation in ``text``.

    Args:
        text: The generated text to scan.

    Returns:
        Citations sorted by start offset; spans never overlap (identifiers and
        author-year forms inside a reference entry belong to the entry).
    """
    out: list[Citation] = []
    taken: list[tuple[int, int]] = []
    # 1. reference-list entries, line by line
    in_section = False
    pos = 0
    for line in text.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        content = line.rstrip("\r\n")
        if _HEADING.match(content):
            in_section = True
            continue
        if not content.strip():
            continue
        marker = _NUMBERED.match(content)
        body = content[marker.end() :] if marker else content.strip()
        if _looks_like_entry(body, in_section, marker is not None):
            cit = _entry(content, line_start, line_start, pos)
            out.append(cit)
            taken.append((cit.start, cit.end))
        elif in_section and len(body.split()) > 60:
            in_section = False  # a paragraph: the reference section is over

    def free(a: int, b: int) -> bool:
        return not any(a < y and x < b for x, y in taken)

    # 2. identifiers in running text
    for regex, kind in ((_DOI_RE, "doi"), (_ARXIV_RE, "arxiv"), (_URL_RE, "url")):
        for m in regex.finditer(text):
            a, b = m.span()
            while b > a and text[b - 1] in ".,;:)]":
                b -= 1
            if not free(a, b):
                continue
            raw = text[a:b]
            cit = Citation(text=raw, start=a, end=b, kind=kind)
            if kind == "doi":
                cit.doi = canonical_doi(m.group(1))
            elif kind == "arxiv":
                cit.arxiv = canonical_arxiv(m.group(1))
            else:
                cit.url = raw
            out.append(cit)
            taken.append((a, b))

    # 3. author-year references
    ay: list[Citation] = []
    for m in _NARRATIVE.finditer(text):
        names = m.group("names")
        a = m.start("names")
        # drop leading capitalised non-names ("In Smith (2020)" -> "Smith")
        while True:
            first = re.match(r"(\S+)\s+", names)
            if first and first.group(1).lower() in _NOT_NAMES and len(names.split()) > 1:
                a += first.end()
                names = names[first.end() :]
                continue
            break
        if not _is_name(names) or not free(a, m.end()):
            continue
        keys, et_al = parse_names(names)
        if keys:
            year = int(m.group("year"))
            ay.append(
                Citation(
                    text=text[a : m.end()],
                    start=a,
                    end=m.end(),
                    kind="author_year",
                    names=names,
                    author_keys=keys,
                    et_al=et_al,
                    year=year,
                    years=[year],
                )
            )
    for m in _PAREN.finditer(text):
        inner_start = m.start(1)
        offset = 0
        for part in m.group(1).split(";"):
            pm = _PAREN_PART.match(part)
            p_start = inner_start + offset
            offset += len(part) + 1
            if not pm or not _is_name(pm.group("names")):
                continue
            a = p_start + pm.start("names")
            b = p_start + len(part.rstrip())
            if not free(a, b) or any(c.start < b and a < c.end for c in ay):
                continue
            keys, et_al = parse_names(pm.group("names"))
            year = int(pm.group("year"))
            ay.append(
                Citation(
                    text=text[a:b],
                    start=a,
                    end=b,
                    kind="author_year",
                    names=pm.group("names"),
                    author_keys=keys,
                    et_al=et_al,
                    year=year,
                    years=[year],
                )
            )
    # 4. quoted / italic titles, merged with an author-year reference of the same sentence
    for m in _QUOTED.finditer(text):
        g = next(i for i in range(1, 5) if m.group(i) is not None)
        title = m.group(g).strip().rstrip(",.;:")
        a, b = m.span()
        if len(title.split()) < 3 or not free(a, b):
            continue
        partner = None
        for c in ay:
            gap = text[c.end : a] if c.end <= a else text[b : c.start]
            if len(gap) <= 80 and not re.search(r"[.!?]\s|\n", gap):
                partner = c
                break
        if partner is not None:
            ay.remove(partner)
            s, e = min(partner.start, a), max(partner.end, b)
            t0 = m.start(g) - s
            out.append(
                Citation(
                    text=text[s:e],
                    start=s,
                    end=e,
                    kind="author_year_title",
                    title=title,
                    title_span=(t0, t0 + len(title)),
                    names=partner.names,
                    author_keys=partner.author_keys,
                    et_al=partner.et_al,
                    year=partner.year,
                    years=partner.years,
                )
            )
            taken.append((s, e))
            continue
        if _standalone_title(title, m.group(g), text[max(0, a - 40) : a]):
            t0 = m.start(g) - a
            out.append(
                Citation(text=text[a:b], start=a, end=b, kind="title", title=title, title_span=(t0, t0 + len(title)))
            )
            taken.append((a, b))
    out.extend(c for c in ay if free(c.start, c.end))
    out.sort(key=lambda c: c.start)
    return out


def citation_query(cit: Citation) -> str:
    """Text used to retrieve candidate records for ``cit`` (its title, else its text minus ids)."""
    if cit.title:
        return cit.title
    _, _, _, spans = _ids_in(cit.text)
    text = cit.text
    for a, b in sorted(spans, reverse=True):
        text = text[:a] + " " + text[b:]
    return text


__all__ = [
    "Citation",
    "extract_citations",
    "parse_names",
    "guess_entry_title",
    "entry_years",
    "citation_query",
    "claimed_years",
    "norm_text",
]
