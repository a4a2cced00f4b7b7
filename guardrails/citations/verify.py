"""Verify extracted citations against a :class:`~guardrails.citations.database.CitationDatabase`.

For each citation:

1. **Exact id**: a DOI / arXiv id / URL found in the database fixes the
   record; the other claimed fields are then compared with it.
2. **Author-year only** (``Smith et al. (2020)``): when the same text holds a
   reference-list entry by that first author and year, the reference takes
   that entry's verdict (``refers_to``); otherwise the database is looked up
   by (first-author surname, year), checking the second author when named.
3. **Title-bearing citations** (list entries, quoted titles): candidates come
   from the fuzzy title index (IDF word overlap, top 12) and, when none of
   them is a close title match, from the embedding index (cosine top 5 of
   the claimed title; all such queries of one text are embedded in one
   batch). Each candidate title is aligned inside the citation with
   ``rapidfuzz.fuzz.partial_ratio_alignment``; the aligned region is grown to
   the enclosing title delimiters (quotes, ``". "``), so that a real short
   title inside a longer invented one does not count, and compared with
   ``fuzz.ratio`` on normalised text (0-100).

Verdicts (thresholds in :class:`VerifyParams`):

* ``verified``: title similarity >= ``title_match`` (default 90) and the
  claimed authors and year agree with the record;
* ``mismatch``: a real work is identified (by id, or title >= ``title_match``)
  but a claimed field disagrees -- ``fields`` names them (``year``,
  ``authors``, ``doi``, ``arxiv``, ``title``); also when the title is only
  close (>= ``title_close``, default 80) while authors and year both agree
  (``fields == ["title"]``);
* ``not_found``: no record is close enough -- likely fabricated; ``nearest``
  lists the closest real works;
* ``unverifiable``: too little to look up (a URL that is not in the
  database, an entry with neither a title nor an id).

Author comparison: every record author's surname must appear in the claimed
author text (only the first one when the list is cut with ``et al.``), and
every capitalised word there must belong to some record author's name.

Long module: the verdict logic (identifier, exact title, fuzzy title, embedding) is one decision procedure read top to bottom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from guardrails.citations.database import CitationDatabase
from guardrails.citations.extract import Citation, _ids_in, citation_query, claimed_years
from guardrails.citations.records import norm_text, norm_with_map

VERDICTS = ("verified", "mismatch", "not_found", "unverifiable")
_NAME_WORD = re.compile(r"[^\W\d_][^\W\d_'’\-]*")
_IGNORED_WORDS = frozenset(
    "and et al eds ed in by see also the jr sr ii iii iv von van der den de du da di le la del della ter ten "
    "dos das others editor editors".split()
)
_LEFT_DELIMS = '"“”«»*_\n'
_RIGHT_DELIMS = '"“”«»*_\n'


@dataclass(frozen=True)
class VerifyParams:
    """Thresholds of the verifier (similarities on a 0-100 scale).

    Attributes:
        title_match: Title similarity at or above which a candidate is the cited work.
        title_close: Lower similarity accepted when authors and year both agree
            (verdict ``mismatch`` with field ``title``).
        lexical_k: Candidates taken from the fuzzy title index.
        embed_k: Candidates taken from the embedding index.
        nearest_k: Real works reported for a ``not_found`` citation.
    """

    title_match: float = 90.0
    title_close: float = 80.0
    lexical_k: int = 12
    embed_k: int = 5
    nearest_k: int = 3


@dataclass
class CitationCheck:
    """The verdict on one citation.

    Attributes:
        citation: The extracted citation.
        verdict: One of ``verified``, ``mismatch``, ``not_found``, ``unverifiable``.
        match: Row of the best matching record (``verified`` / ``mismatch``), else ``None``.
        fields: For ``mismatch``, the disagreeing fields.
        similarity: Title similarity in [0, 1] with ``match`` (or the nearest work), if computed.
        nearest: For ``not_found``: ``[(row, similarity in [0, 1])]`` best first.
        refers_to: Index (in the same check list) of the reference entry an
            author-year citation points to, if any.
        reason: Short human-readable explanation.
    """

    citation: Citation
    verdict: str
    match: int | None = None
    fields: list[str] = field(default_factory=list)
    similarity: float | None = None
    nearest: list[tuple[int, float]] = field(default_factory=list)
    refers_to: int | None = None
    reason: str = ""

    def to_dict(self, db: CitationDatabase) -> dict[str, Any]:
        """JSON form for guardrail details: ``text, span, kind, verdict, match`` (+ ``fields``/``nearest``)."""
        out: dict[str, Any] = {
            "text": self.citation.text,
            "span": self.citation.span,
            "kind": self.citation.kind,
            "verdict": self.verdict,
            "match": db.records[self.match].brief() if self.match is not None else None,
        }
        if self.verdict == "mismatch":
            out["fields"] = list(self.fields)
        if self.verdict == "not_found":
            out["nearest"] = [dict(db.records[i].brief(), similarity=round(s, 3)) for i, s in self.nearest]
        if self.similarity is not None:
            out["similarity"] = round(self.similarity, 3)
        if self.refers_to is not None:
            out["refers_to"] = self.refers_to
        if self.reason:
            out["reason"] = self.reason
        return out


# --------------------------------------------------------------------------- field comparison


def _expand(text: str, a: int, b: int) -> tuple[int, int]:
    """Grow ``[a, b)`` to the enclosing title delimiters of ``text`` (quotes, sentence ends)."""
    while (
        a > 0
        and text[a - 1] not in _LEFT_DELIMS
        and not (a >= 2 and text[a - 1] == " " and text[a - 2] in ".?!" and not _initial_before(text, a - 2))
        and not (text[a - 1] == ")")
    ):
        a -= 1
    n = len(text)
    while (
        b < n
        and text[b] not in _RIGHT_DELIMS
        and not (text[b] in ".?!" and (b + 1 == n or text[b + 1] in " \n"))
        and text[b] != "("
    ):
        b += 1
    return a, b


def _initial_before(text: str, dot: int) -> bool:
    """Whether the ``.`` at ``dot`` ends an initial (``J.``) rather than a sentence."""
    return dot >= 1 and text[dot - 1].isalpha() and (dot < 2 or not text[dot - 2].isalnum())


def title_similarity(
    cit: Citation, cand_norm: str, entry_norm: str, entry_map: list[int]
) -> tuple[float, tuple[int, int] | None]:
    """Similarity (0-100) of a candidate title with the title claimed by ``cit``, and the claimed title's span.

    Args:
        cit: The citation.
        cand_norm: Normalised candidate title (:func:`norm_text`).
        entry_norm: ``norm_with_map(cit.text)[0]``.
        entry_map: ``norm_with_map(cit.text)[1]``.

    Returns:
        ``(score, span)`` where ``span`` is relative to ``cit.text``.
    """
    best, region = 0.0, None
    if cit.title:
        best = fuzz.ratio(norm_text(cit.title), cand_norm)
        region = cit.title_span
    if cit.kind == "reference" and entry_norm and (len(cand_norm.split()) >= 3 or region is None or best >= 90):
        al = fuzz.partial_ratio_alignment(cand_norm, entry_norm, score_cutoff=80)
        if al is not None and al.dest_end > al.dest_start:
            a = entry_map[al.dest_start]
            b = entry_map[al.dest_end - 1] + 1
            a, b = _expand(cit.text, a, b)
            score = fuzz.ratio(norm_text(cit.text[a:b]), cand_norm)
            if score > best:
                best, region = score, (a, b)
    return best, region


def author_check(claimed: str | None, record_authors: list[str], record_keys: list[str]) -> bool | None:
    """Whether the claimed author text agrees with a record's authors.

    Args:
        claimed: Author part of the citation as written (``"Smith, J., & Lee, K."``,
            ``"Smith et al."``), or ``None``.
        record_authors: The record's author names.
        record_keys: Their surname keys (:func:`~guardrails.citations.records.surname_key`).

    Returns:
        ``True`` (agree), ``False`` (a surname missing or a foreign name
        present) or ``None`` when either side has no names to compare.
    """
    if not claimed or not record_keys:
        return None
    words = [w for w in _NAME_WORD.findall(claimed) if w[0].isupper()]
    words = [w for w in words if norm_text(w) and norm_text(w) not in _IGNORED_WORDS]
    if not words:
        return None
    rec_tokens = {t for a in record_authors for t in norm_text(a).split()}
    for w in words:
        for t in norm_text(w).split():
            if len(t) >= 2 and t not in rec_tokens and t not in _IGNORED_WORDS:
                return False
    claimed_tokens = set(norm_text(claimed).split())
    et_al = bool(re.search(r"\bet\s+al\b|\.\.\.|…|\bothers\b", claimed))
    required = record_keys[:1] if et_al else record_keys
    return all(k in claimed_tokens for k in required)


def compare_fields(
    cit: Citation, db: CitationDatabase, row: int, title_span: tuple[int, int] | None
) -> tuple[list[str], bool]:
    """Fields of ``cit`` that disagree with record ``row``, and whether authors *and* year were checked.

    Returns:
        ``(fields, fully_checked)`` -- ``fields`` is a subset of
        ``["authors", "year", "doi", "arxiv"]`` in that order.
    """
    rec = db.records[row]
    fields: list[str] = []
    if cit.kind == "reference":
        _, _, _, id_spans = _ids_in(cit.text)
        excl = id_spans + ([title_span] if title_span else [])
        years = claimed_years(cit.text, excl)
        if title_span:
            claimed = cit.text[: title_span[0]]
            if not _NAME_WORD.search(claimed or ""):
                claimed = None
        else:
            claimed = cit.names
    else:
        years = cit.years
        claimed = cit.names
    if claimed:
        claimed = re.sub(r"\(?\b(?:1[6-9]\d\d|20\d\d)[a-z]?\b\)?", " ", claimed)
    authors_ok = author_check(claimed, rec.authors, db.author_keys[row])
    year_ok = None
    if rec.year is not None and years:
        year_ok = rec.year in years
    if authors_ok is False:
        fields.append("authors")
    if year_ok is False:
        fields.append("year")
    if cit.doi and rec.doi and cit.doi != rec.doi:
        fields.append("doi")
    if cit.arxiv and rec.arxiv and cit.arxiv != rec.arxiv:
        fields.append("arxiv")
    return fields, (authors_ok is not None and year_ok is not None)


# --------------------------------------------------------------------------- verification


def _best_title(cit: Citation, db: CitationDatabase, rows: list[int], entry: tuple[str, list[int]]):
    """Best ``(score, row, span)`` among ``rows``; ties within 2 points among matches go to the fewest wrong fields.

    A reference often holds two real titles (a paper and its proceedings
    volume, itself a record). Preference: a record whose authors and year
    could both be compared, then the fewest disagreeing fields, then the
    higher score.
    """
    scored = []
    for row in dict.fromkeys(rows):
        score, span = title_similarity(cit, db.norm_titles[row], entry[0], entry[1])
        scored.append((score, row, span))
    if not scored:
        return (-1.0, None, None)
    scored.sort(key=lambda x: -x[0])
    top = scored[0]
    close = [x for x in scored if x[0] >= 90.0 and x[0] >= top[0] - 2]
    if len(close) > 1:

        def key(x):
            fields, full = compare_fields(cit, db, x[1], x[2])
            return (not full, len(fields), -x[0])

        return min(close, key=key)
    return top


def _decide_title(
    cit: Citation,
    db: CitationDatabase,
    score: float,
    row: int | None,
    span: tuple[int, int] | None,
    params: VerifyParams,
) -> CitationCheck | None:
    if row is None:
        return None
    if score >= params.title_match:
        fields, _ = compare_fields(cit, db, row, span)
        if fields:
            return CitationCheck(
                cit,
                "mismatch",
                match=row,
                fields=fields,
                similarity=score / 100,
                reason=f"real work, but {' and '.join(fields)} differ",
            )
        return CitationCheck(cit, "verified", match=row, similarity=score / 100, reason="title, authors and year match")
    if score >= params.title_close:
        fields, full = compare_fields(cit, db, row, span)
        if not fields and full:
            return CitationCheck(
                cit,
                "mismatch",
                match=row,
                fields=["title"],
                similarity=score / 100,
                reason="authors and year match a real work whose title differs",
            )
    return None


def verify_citations(
    citations: list[Citation], db: CitationDatabase, params: VerifyParams | None = None
) -> list[CitationCheck]:
    """Verify ``citations`` (from one text) against ``db``.

    Args:
        citations: Output of :func:`~guardrails.citations.extract.extract_citations`.
        db: The (merged) citation database.
        params: Thresholds; defaults to :class:`VerifyParams`.

    Returns:
        One :class:`CitationCheck` per citation, in the same order. At most
        one batched encoder call is made (for the citations the lexical
        path could not settle); embeddings are cached across calls.
    """
    params = params or VerifyParams()
    checks: list[CitationCheck | None] = [None] * len(citations)
    pending: list[tuple[int, list[int], tuple[str, list[int]], tuple]] = []
    entries = [(i, c) for i, c in enumerate(citations) if c.kind == "reference"]

    for i, cit in enumerate(citations):
        # 1. exact identifiers
        rows: list[int] = []
        if cit.doi:
            rows = db.lookup_doi(cit.doi)
        if not rows and cit.arxiv:
            rows = db.lookup_arxiv(cit.arxiv)
        if not rows and cit.url:
            rows = db.lookup_url(cit.url)
        if cit.kind in ("doi", "arxiv", "url"):
            if rows:
                checks[i] = CitationCheck(cit, "verified", match=rows[0], similarity=1.0, reason=f"{cit.kind} found")
            elif cit.kind == "url":
                checks[i] = CitationCheck(cit, "unverifiable", reason="URL not in the citation database")
            else:
                checks[i] = CitationCheck(cit, "not_found", reason=f"{cit.kind} not in the citation database")
            continue
        entry = norm_with_map(cit.text) if cit.kind == "reference" else ("", [])
        if rows:
            score, row, span = _best_title(cit, db, rows, entry)
            fields, _ = compare_fields(cit, db, row, span)
            if score >= 0 and score < params.title_close and (cit.title or span):
                fields = ["title"] + fields
            checks[i] = CitationCheck(
                cit,
                "mismatch" if fields else "verified",
                match=row,
                fields=fields,
                similarity=max(score, 0) / 100,
                reason="identifier found" + (f"; {', '.join(fields)} differ" if fields else ""),
            )
            continue
        # 2. author-year only
        if cit.kind == "author_year":
            key = cit.author_keys[0]
            for j, e in entries:
                if e.author_keys and e.author_keys[0] == key and cit.year in e.years:
                    checks[i] = CitationCheck(cit, "pending_ref", refers_to=j)
                    break
            if checks[i] is not None:
                continue
            hits = db.lookup_author_year(key, cit.year)
            if len(cit.author_keys) > 1 and not cit.et_al:
                hits = [h for h in hits if cit.author_keys[1] in db.author_keys[h]]
            if hits:
                checks[i] = CitationCheck(cit, "verified", match=hits[0], reason="first author and year match")
            else:
                by_author = db.by_author.get(key, [])
                near = sorted(by_author, key=lambda r: abs((db.records[r].year or 0) - cit.year))[: params.nearest_k]
                checks[i] = CitationCheck(
                    cit,
                    "not_found",
                    nearest=[(r, 0.0) for r in near],
                    reason="no work by this first author in that year",
                )
            continue
        # 3. title-bearing
        query = norm_text(cit.text) if cit.kind == "reference" else norm_text(cit.title or "")
        cands = db.lexical_candidates(query, k=params.lexical_k)
        best = _best_title(cit, db, cands, entry)
        decided = _decide_title(cit, db, *best, params) if best[0] >= params.title_match else None
        if decided is not None:
            checks[i] = decided
            continue
        if cit.kind == "reference" and cit.title is None and best[0] < params.title_close and len(query.split()) < 3:
            checks[i] = CitationCheck(cit, "unverifiable", reason="no title or identifier to look up")
            continue
        pending.append((i, cands, entry, best))

    if pending:
        texts = [citation_query(citations[i]) for i, *_ in pending]
        vecs = db.embed(texts)
        neigh = db.nearest(vecs, k=max(params.embed_k, params.nearest_k))
        for (i, cands, entry, best), qv, nn in zip(pending, vecs, neigh, strict=False):
            cit = citations[i]
            extra = [r for r, _ in nn[: params.embed_k] if r not in cands]
            if extra:
                cand_best = _best_title(cit, db, extra, entry)
                if cand_best[0] > best[0]:
                    best = cand_best
            decided = _decide_title(cit, db, *best, params)
            if decided is not None:
                checks[i] = decided
                continue
            rows = list(dict.fromkeys([r for r, _ in nn] + cands[:3]))
            sims = db.embeddings[rows] @ qv if rows else np.zeros(0)
            order = np.argsort(-sims)[: params.nearest_k]
            nearest = [(rows[k], float(sims[k])) for k in order]
            checks[i] = CitationCheck(
                cit,
                "not_found",
                nearest=nearest,
                similarity=max(best[0], 0) / 100 if best[1] is not None else None,
                reason="no record with a close enough title",
            )

    # author-year references that point to an entry of the same text take its verdict
    for i, chk in enumerate(checks):
        if chk is not None and chk.verdict == "pending_ref":
            target = checks[chk.refers_to]
            checks[i] = CitationCheck(
                chk.citation,
                target.verdict,
                match=target.match,
                fields=list(target.fields),
                similarity=target.similarity,
                nearest=list(target.nearest),
                refers_to=chk.refers_to,
                reason="refers to a reference-list entry",
            )
    return checks  # type: ignore[return-value]
