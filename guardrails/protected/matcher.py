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
        self._window_params = CorpusParams(**{**p.__dict__, "passage_stride": min(self.window_stride, p.passage_len)})
        langs = Counter(d.language for d in corpus.documents.values() if d.language)
        self.language = langs.most_common(1)[0][0] if langs else "python"
        self._unique_cache: dict[tuple[int, int, int], int] = {}
        self.max_matrix_cells = 4_000_000

    def match(self, text: str, threshold: float) -> tuple[list[Match], float]:
        """Find the protected documents that ``text`` reproduces.

        Verification is batched per document instead of per (window,
        candidate) pair: the candidate regions of a document (each candidate
        passage plus one passage length either side) are merged, the query's
        shingles are looked up in them once (*hits*: equal shingle hashes at a
        query position and a document position), and the containment of every
        candidate pair is then counted on a small pairs × hits boolean matrix.
        The result is the same exact containment as verifying pair by pair.

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
        pw, pid = corpus.candidate_pairs(corpus.hasher.windows(q, ws, we))
        if len(pw) == 0:
            return [], 0.0
        if len(pw) > self.max_candidates:  # cap per window (pairs are sorted by window)
            first = np.searchsorted(pw, pw, side="left")
            keep = np.arange(len(pw)) - first < self.max_candidates
            pw, pid = pw[keep], pid[keep]
        docs, ps, pe, valid = corpus.passage_spans(pid)
        pw, pid, docs, ps, pe = pw[valid], pid[valid], docs[valid], ps[valid], pe[valid]
        if len(pw) == 0:
            return [], 0.0
        # Distinct query shingle values: ids into qu, and the query positions of each value.
        qu, q_val = np.unique(q, return_inverse=True)
        q_order = np.argsort(q_val, kind="stable")
        q_first = np.searchsorted(q_val[q_order], np.arange(len(qu) + 1))
        n_unique = np.array([len(np.unique(q_val[s:e])) for s, e in zip(ws, we, strict=False)], np.int64)
        best = 0.0
        per_doc: dict[int, dict[str, Any]] = {}
        L = p.passage_shingles
        for d in np.unique(docs).tolist():
            sel = docs == d
            w_d, pid_d, ps_d, pe_d = pw[sel], pid[sel], ps[sel], pe[sel]
            sh = corpus.data[d].shingles
            rs_d = np.maximum(ps_d - L, 0)
            re_d = np.minimum(pe_d + L, len(sh))
            # Document positions of the merged candidate regions, and the hits in them.
            regions = _merge(list(zip(rs_d.tolist(), (re_d - 1).tolist(), strict=False)), gap=0)
            pos = np.concatenate([np.arange(a, b + 1) for a, b in regions])
            vals = sh[pos]
            idx = np.minimum(np.searchsorted(qu, vals), len(qu) - 1)
            found = qu[idx] == vals
            if not found.any():
                continue
            hj, hv = pos[found], idx[found]
            # Expand to (query position, document position) pairs (a value may repeat in the query).
            reps = q_first[hv + 1] - q_first[hv]
            offs = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
            hi = q_order[np.repeat(q_first[hv], reps) + offs]
            hj, hv = np.repeat(hj, reps), np.repeat(hv, reps)
            # Sort hits by value so distinct values are contiguous column groups.
            order = np.argsort(hv, kind="stable")
            hi, hj, hv = hi[order], hj[order], hv[order]
            groups = np.flatnonzero(np.r_[True, hv[1:] != hv[:-1]])
            # Pairs x hits boolean matrices, in chunks of at most ~4M cells (repetitive corpora).
            cont = np.zeros(len(w_d))
            n_int = np.zeros(len(w_d), np.int64)
            used = np.zeros(len(hi), bool)
            step = max(1, self.max_matrix_cells // max(len(hi), 1))
            for c0 in range(0, len(w_d), step):
                c = slice(c0, c0 + step)
                in_win = (hi[None, :] >= ws[w_d[c]][:, None]) & (hi[None, :] < we[w_d[c]][:, None])
                in_reg = in_win & (hj[None, :] >= rs_d[c, None]) & (hj[None, :] < re_d[c, None])
                cont[c] = np.logical_or.reduceat(in_reg, groups, axis=1).sum(axis=1) / n_unique[w_d[c]]
                ok_c = cont[c] >= threshold
                if ok_c.any():
                    in_pas = in_win[ok_c] & (hj[None, :] >= ps_d[c][ok_c, None]) & (hj[None, :] < pe_d[c][ok_c, None])
                    n_int[c][ok_c] = np.logical_or.reduceat(in_pas, groups, axis=1).sum(axis=1)
                    used |= in_reg[ok_c].any(axis=0)
            best = max(best, float(cont.max()))
            ok = np.flatnonzero(cont >= threshold)
            if len(ok) == 0:
                continue
            p_unique = np.array(
                [self._passage_unique(d, a_, b_) for a_, b_ in zip(ps_d[ok].tolist(), pe_d[ok].tolist(), strict=False)],
                np.int64,
            )
            jac = n_int[ok] / (n_unique[w_d[ok]] + p_unique - n_int[ok])
            j_best = int(np.argmax(jac))
            per_doc[d] = {
                "sim": float(cont[ok].max()),
                "jac": float(jac[j_best]),
                "pid": int(pid_d[ok][j_best]),
                "q": set(hi[used].tolist()),
                "d": [(int(hj[used].min()), int(hj[used].max()))],
                "windows": set(w_d[ok].tolist()),
            }
        matches = [self._build(doc_id, rec, stream) for doc_id, rec in per_doc.items()]
        matches.sort(key=lambda m: -m.similarity)
        return matches, best

    def _passage_unique(self, doc_id: int, start: int, end: int) -> int:
        """Number of distinct shingles of ``shingles[start:end]`` of a document (memoised)."""
        key = (doc_id, start, end)
        n = self._unique_cache.get(key)
        if n is None:
            n = len(np.unique(self.corpus.data[doc_id].shingles[start:end]))
            if len(self._unique_cache) > 100_000:
                self._unique_cache.clear()
            self._unique_cache[key] = n
        return n

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
        return Match(
            corpus.name,
            doc.name,
            doc_id,
            rec["pid"],
            passage_chars,
            doc_span,
            rec["sim"],
            max(rec["jac"], 0.0),
            spans,
            len(rec["windows"]),
        )
