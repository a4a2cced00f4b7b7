"""Find protected passages in a text: windows → MinHash → LSH candidates → exact verification.

1. The query text is normalised and tokenised like the corpus
   (:mod:`guardrails.protected.shingling`) and cut into overlapping windows of
   the corpus' passage length, every ``window_stride`` tokens.
2. Each window's MinHash signature is looked up in the LSH bands; a candidate
   is a passage sharing at least one whole band (MMDS ch. 3.4).
3. Each candidate is **verified exactly** on shingle sets, so LSH false
   positives never reach a decision:

   * ``containment = |W ∩ R| / |W|`` — the fraction of the window's shingles
     ``W`` found in the candidate passage *and its neighbours* ``R`` (one
     passage length either side). Containment (Broder 1997) is insensitive to
     how the window and passage boundaries are aligned, so it is the score
     compared with the corpus threshold;
   * ``jaccard = |W ∩ P| / |W ∪ P|`` with the passage ``P`` itself, reported
     alongside.

4. Verified windows of the same document are merged; the matched query span
   is the union of the tokens of the shared shingles (gaps of up to ``k``
   tokens are bridged, so the edited words inside a copied span are covered
   too) and is reported in characters of the *original* text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guardrails.protected.index import Corpus, CorpusParams, passage_bounds
from guardrails.protected.shingling import shingle_hashes, tokens_for


@dataclass
class Match:
    """One protected document reproduced in the query text.

    Attributes:
        corpus: Corpus name.
        document: Document name (usually its path when added).
        doc_id: Document id inside the corpus.
        passage_id: Best-matching indexed passage.
        passage_chars: ``(start, end)`` character offsets of that passage in
            the protected document.
        doc_span: ``(start, end)`` characters of the protected document
            covered by the shared shingles.
        similarity: Best window containment in [0, 1] (the score).
        jaccard: Best window-to-passage Jaccard similarity in [0, 1].
        query_spans: ``[(start, end), ...]`` characters of the query text that
            reproduce the document.
        windows: Number of verified query windows.
    """

    corpus: str
    document: str
    doc_id: int
    passage_id: int
    passage_chars: tuple[int, int]
    doc_span: tuple[int, int]
    similarity: float
    jaccard: float
    query_spans: list[tuple[int, int]] = field(default_factory=list)
    windows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in guardrail ``details``."""
        return {
            "corpus": self.corpus,
            "document": self.document,
            "passage_id": self.passage_id,
            "passage_chars": list(self.passage_chars),
            "doc_span": list(self.doc_span),
            "similarity": round(self.similarity, 4),
            "jaccard": round(self.jaccard, 4),
            "query_spans": [list(s) for s in self.query_spans],
            "windows": self.windows,
        }


def _merge(intervals: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Merge inclusive integer intervals whose distance is at most ``gap``."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1] + gap + 1:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class Matcher:
    """Matches texts against one loaded :class:`Corpus` (read-only, thread-safe).

    Args:
        corpus: The corpus to search.
        window_stride: Tokens between query window starts (default: half the
            corpus passage stride, at least 1). Smaller is more robust to
            alignment and slower (one signature and LSH lookup per window).
        max_candidates: Per window, verify at most this many LSH candidates
            (the ones sharing the most bands are not distinguished; a cap only
            bounds the worst case on highly repetitive corpora).
    """

    def __init__(self, corpus: Corpus, window_stride: int | None = None, max_candidates: int = 64) -> None:
        self.corpus = corpus
        p = corpus.params
        self.window_stride = window_stride or max(1, p.passage_stride // 2)
        self.max_candidates = max_candidates
        self._window_params = CorpusParams(**{**p.__dict__, "passage_stride": min(self.window_stride,
                                                                                  p.passage_len)})
        langs = Counter(d.language for d in corpus.documents.values() if d.language)
        self.language = langs.most_common(1)[0][0] if langs else "python"

    def match(self, text: str, threshold: float) -> tuple[list[Match], float]:
        """Find the protected documents that ``text`` reproduces.

        Args:
            text: Query text (a model output or prompt), any Unicode.
            threshold: Minimum window containment in [0, 1] for a match.

        Returns:
            ``(matches, best)``: the verified matches (best first) and the
            highest containment seen among all LSH candidates (``0.0`` when
            none), also when it is below ``threshold``.
        """
        corpus, p = self.corpus, self.corpus.params
        stream = tokens_for(text, p.kind, self.language)
        q = shingle_hashes(stream.tokens, p.k)
        if len(q) == 0 or not corpus.documents:
            return [], 0.0
        ws, we = passage_bounds(len(q), self._window_params)
        cands = corpus.candidates(corpus.hasher.windows(q, ws, we))
        best = 0.0
        per_doc: dict[int, dict[str, Any]] = {}
        region_cache: dict[tuple[int, int, int], np.ndarray] = {}
        for w, pids in enumerate(cands):
            if len(pids) == 0:
                continue
            pids = pids[: self.max_candidates]
            qw = q[ws[w]:we[w]]
            qu = np.unique(qw)
            for pid in pids:
                pid = int(pid)
                if corpus.doc_of(np.array([pid]))[0] not in corpus.data:
                    continue
                doc_id, ps, pe = corpus.passage_range(pid)
                sh = corpus.data[doc_id].shingles
                rs, re_ = max(0, ps - p.passage_shingles), min(len(sh), pe + p.passage_shingles)
                key = (doc_id, rs, re_)
                region = region_cache.get(key)
                if region is None:
                    region = region_cache[key] = np.unique(sh[rs:re_])
                inter = np.isin(qu, region, assume_unique=True)
                containment = float(inter.mean())
                best = max(best, containment)
                if containment < threshold:
                    continue
                pu = np.unique(sh[ps:pe])
                n_int = int(np.isin(qu, pu, assume_unique=True).sum())
                jac = n_int / (len(qu) + len(pu) - n_int)
                rec = per_doc.setdefault(doc_id, {"sim": 0.0, "jac": -1.0, "pid": pid, "q": set(),
                                                  "d": [], "windows": set()})
                rec["windows"].add(w)
                rec["sim"] = max(rec["sim"], containment)
                if jac > rec["jac"]:
                    rec["jac"], rec["pid"] = jac, pid
                shared = set(qu[inter].tolist())
                in_q = np.nonzero(np.isin(qw, list(shared)))[0] + ws[w]
                rec["q"].update(in_q.tolist())
                in_d = np.nonzero(np.isin(sh[rs:re_], list(shared)))[0]
                if len(in_d):
                    rec["d"].append((rs + int(in_d[0]), rs + int(in_d[-1])))
        matches = [self._build(doc_id, rec, stream) for doc_id, rec in per_doc.items()]
        matches.sort(key=lambda m: -m.similarity)
        return matches, best

    def _build(self, doc_id: int, rec: dict[str, Any], stream) -> Match:
        corpus, k = self.corpus, self.corpus.params.k
        doc = corpus.documents[doc_id]
        data = corpus.data[doc_id]
        tok_spans = _merge([(i, i + k - 1) for i in rec["q"]], gap=k)
        n_tok = len(stream.tokens)
        spans = [(int(stream.starts[s]), int(stream.ends[min(e, n_tok - 1)])) for s, e in tok_spans]
        _, ps, pe = corpus.passage_range(rec["pid"])
        last = len(data.tok_ends) - 1
        passage_chars = (int(data.tok_starts[ps]), int(data.tok_ends[min(pe - 1 + k - 1, last)]))
        ds = min(s for s, _ in rec["d"])
        de = max(e for _, e in rec["d"])
        doc_span = (int(data.tok_starts[ds]), int(data.tok_ends[min(de + k - 1, last)]))
        return Match(corpus.name, doc.name, doc_id, rec["pid"], passage_chars, doc_span,
                     rec["sim"], max(rec["jac"], 0.0), spans, len(rec["windows"]))
