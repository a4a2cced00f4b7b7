"""The citation database: exact, fuzzy-title and embedding indexes over verified records.

Three indexes answer "which real works could this citation be?":

* **exact**: canonical DOI, arXiv id and URL -> record rows (dicts);
* **fuzzy title**: an inverted index of normalised title words with IDF
  weights. A query (a claimed title or a whole reference entry) scores each
  title by ``matched_idf * matched_idf / title_idf`` -- the IDF mass of the
  title found in the query, times the share of the title it covers -- and the
  top rows are then compared character by character with ``rapidfuzz``
  (see :mod:`guardrails.citations.verify`);
* **embedding**: titles (+ the first 500 characters of abstracts when
  present) embedded with the shared all-MiniLM-L6-v2 encoder
  (:func:`guardrails.encoders.sentence_encoder`), stored as an L2-normalised
  ``float32`` matrix of shape ``(n_records, 384)``; cosine top-k is one
  matrix product. Query embeddings are batched and cached (LRU).

A database persists as a directory ``<home>/citations/<name>/`` holding
``records.jsonl``, ``embeddings.npy`` (``float16`` on disk) and ``meta.json``.
The word and author indexes are rebuilt on load (well under a second for
20,000 records).

Long module: the database (records, indexes, embeddings, persistence) is one class whose indexes must stay consistent.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from guardrails.citations.records import (
    CitationRecord,
    canonical_arxiv,
    canonical_doi,
    canonical_url,
    norm_text,
    surname_key,
)

DB_DIRNAME = "citations"
FORMAT_VERSION = 1
_ENCODE_LOCK = threading.Lock()  # HF fast tokenizers are not safe to call from several threads at once
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
STOPWORDS = frozenset(
    "a an and are as at be by for from in into is it its of on or over than that the their this to "
    "under via vs we with without using towards toward through".split()
)


def citations_dir(home: str | Path | None = None) -> Path:
    """Directory holding all citation databases: ``<home>/citations`` (``home`` defaults to ``greenlist_home()``)."""
    if home is None:
        from greenlist.home import greenlist_home

        home = greenlist_home()
    return Path(home) / DB_DIRNAME


def check_name(name: str) -> str:
    """Validate a database name (letters, digits, ``_ . -``; at most 64 characters).

    Raises:
        ValueError: when the name is unusable as a directory name; pick e.g. ``my-papers``.
    """
    if not _NAME_RE.match(name or ""):
        raise ValueError(
            f"invalid citation database name {name!r}: use 1-64 letters, digits, '_', '.' or '-', e.g. 'my-papers'"
        )
    return name


def title_tokens(norm_title: str) -> list[str]:
    """Content words of a normalised title (stopwords and 1-character words removed)."""
    return [w for w in norm_title.split() if len(w) > 1 and w not in STOPWORDS]


def embedding_text(record: CitationRecord) -> str:
    """Text embedded for ``record``: its title, plus up to 500 characters of abstract."""
    if record.abstract:
        return f"{record.title}. {record.abstract[:500]}"
    return record.title


class CitationDatabase:
    """An in-memory, read-only set of verified records with exact, fuzzy and embedding indexes.

    Build one with :meth:`build` (embeds titles), :meth:`load` (from disk) or
    :meth:`merge` (several databases as one). All query methods are
    thread-safe: the indexes never change after construction and the query
    embedding cache is guarded by a lock.

    Attributes:
        name: Database name (directory name on disk).
        records: The records; row ``i`` of every index refers to ``records[i]``.
        embeddings: ``float32`` array ``(len(records), dim)``, rows L2-normalised.
        encoder_name: Encoder used for ``embeddings`` (``None`` = packaged MiniLM).
    """

    def __init__(
        self,
        name: str,
        records: list[CitationRecord],
        embeddings: np.ndarray,
        encoder_name: str | None = None,
        cache_size: int = 4096,
    ) -> None:
        if embeddings.shape[0] != len(records):
            raise ValueError(
                f"database {name!r}: {len(records)} records but {embeddings.shape[0]} embeddings; "
                "rebuild it with `greenlist citations load`"
            )
        self.name = name
        self.records = records
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.encoder_name = encoder_name
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._build_indexes()

    # ------------------------------------------------------------------ indexes

    def _build_indexes(self) -> None:
        self.by_doi: dict[str, list[int]] = defaultdict(list)
        self.by_arxiv: dict[str, list[int]] = defaultdict(list)
        self.by_url: dict[str, list[int]] = defaultdict(list)
        self.by_author_year: dict[tuple[str, int | None], list[int]] = defaultdict(list)
        self.by_author: dict[str, list[int]] = defaultdict(list)
        self.norm_titles: list[str] = []
        self.author_keys: list[list[str]] = []
        vocab: dict[str, int] = {}
        postings: list[list[int]] = []
        for i, rec in enumerate(self.records):
            if rec.doi:
                self.by_doi[rec.doi].append(i)
            if rec.arxiv:
                self.by_arxiv[rec.arxiv].append(i)
            for url in (rec.url,):
                key = canonical_url(url)
                if key and not (rec.doi and canonical_doi(url) == rec.doi):
                    self.by_url[key].append(i)
            keys = [surname_key(a) for a in rec.authors]
            keys = [k for k in keys if k]
            self.author_keys.append(keys)
            if keys:
                self.by_author_year[(keys[0], rec.year)].append(i)
            for k in set(keys):
                self.by_author[k].append(i)
            nt = norm_text(rec.title)
            self.norm_titles.append(nt)
            for tok in set(title_tokens(nt)):
                tid = vocab.setdefault(tok, len(vocab))
                if tid == len(postings):
                    postings.append([])
                postings[tid].append(i)
        n = max(len(self.records), 1)
        self.vocab = vocab
        self.postings = [np.asarray(p, dtype=np.int32) for p in postings]
        self.idf = np.asarray([math.log(1.0 + n / len(p)) for p in postings], dtype=np.float32)
        title_idf = np.zeros(len(self.records), dtype=np.float32)
        for tid, p in enumerate(self.postings):
            title_idf[p] += self.idf[tid]
        self.title_idf = np.maximum(title_idf, 1e-6)

    def __len__(self) -> int:
        return len(self.records)

    # ------------------------------------------------------------------ exact

    def lookup_doi(self, doi: str) -> list[int]:
        """Rows whose DOI equals ``doi`` (any form: bare, ``doi:``, ``https://doi.org/...``)."""
        key = canonical_doi(doi)
        return list(self.by_doi.get(key, ())) if key else []

    def lookup_arxiv(self, arxiv_id: str) -> list[int]:
        """Rows whose arXiv id equals ``arxiv_id`` (version suffix ignored)."""
        key = canonical_arxiv(arxiv_id)
        return list(self.by_arxiv.get(key, ())) if key else []

    def lookup_url(self, url: str) -> list[int]:
        """Rows whose URL equals ``url`` after canonicalisation (scheme, ``www.``, trailing ``/`` ignored)."""
        key = canonical_url(url)
        return list(self.by_url.get(key, ())) if key else []

    def lookup_author_year(self, first_author_key: str, year: int | None) -> list[int]:
        """Rows whose first author's surname key is ``first_author_key`` and year is ``year``."""
        return list(self.by_author_year.get((first_author_key, year), ()))

    # ------------------------------------------------------------------ fuzzy

    def lexical_candidates(self, query_norm: str, k: int = 12) -> list[int]:
        """Top-``k`` rows whose title words best cover ``query_norm`` (a normalised string).

        Score of a title = ``m * m / t`` where ``m`` is the IDF mass of its
        words present in the query and ``t`` the IDF mass of all its words.

        Returns:
            Row indices, best first (rows with no shared word are never returned).
        """
        toks = {t for t in title_tokens(query_norm)}
        tids = [self.vocab[t] for t in toks if t in self.vocab]
        if not tids or not self.records:
            return []
        idx = np.concatenate([self.postings[t] for t in tids])
        weights = np.concatenate([np.full(len(self.postings[t]), self.idf[t], dtype=np.float32) for t in tids])
        matched = np.bincount(idx, weights=weights, minlength=len(self.records)).astype(np.float32)
        score = matched * matched / self.title_idf
        k = min(k, int(np.count_nonzero(score)))
        if k <= 0:
            return []
        top = np.argpartition(-score, k - 1)[:k]
        return top[np.argsort(-score[top])].tolist()

    # ------------------------------------------------------------------ embeddings

    def _encoder(self):
        from guardrails.encoders import sentence_encoder

        return sentence_encoder(self.encoder_name)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in one batch, using the LRU cache; returns ``float32`` ``(len(texts), dim)``, L2-normalised."""
        out: list[np.ndarray | None] = [None] * len(texts)
        missing: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                vec = self._cache.get(t)
                if vec is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(t)
                    out[i] = vec
        if missing:
            todo = list(dict.fromkeys(texts[i] for i in missing))
            encoder = self._encoder()
            with _ENCODE_LOCK:
                vecs = encoder.encode(
                    todo, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )
            vecs = np.asarray(vecs, dtype=np.float32)
            got = dict(zip(todo, vecs, strict=False))
            with self._lock:
                for t, v in got.items():
                    self._cache[t] = v
                    self._cache.move_to_end(t)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            for i in missing:
                out[i] = got[texts[i]]
        dim = self.embeddings.shape[1] if self.embeddings.ndim == 2 else 384
        return np.vstack(out) if out else np.zeros((0, dim), dtype=np.float32)

    def nearest(self, query_vecs: np.ndarray, k: int = 5) -> list[list[tuple[int, float]]]:
        """Cosine top-``k`` rows for each query vector.

        Args:
            query_vecs: ``(q, dim)`` L2-normalised vectors (from :meth:`embed`).
            k: Number of neighbours per query.

        Returns:
            For each query, ``[(row, cosine), ...]`` best first.
        """
        if not len(self.records) or not len(query_vecs):
            return [[] for _ in range(len(query_vecs))]
        sims = query_vecs @ self.embeddings.T  # (q, n)
        k = min(k, sims.shape[1])
        out = []
        for row in sims:
            top = np.argpartition(-row, k - 1)[:k]
            top = top[np.argsort(-row[top])]
            out.append([(int(i), float(row[i])) for i in top])
        return out

    # ------------------------------------------------------------------ build / persist

    @classmethod
    def build(
        cls,
        name: str,
        records: list[CitationRecord],
        encoder_name: str | None = None,
        progress: bool = True,
        batch_size: int = 64,
    ) -> CitationDatabase:
        """Embed ``records`` and return a database (not yet saved; see :meth:`save`).

        Args:
            name: Database name (see :func:`check_name`).
            records: Records to index; duplicates are kept.
            encoder_name: Sentence encoder (``None`` = packaged all-MiniLM-L6-v2).
            progress: Show a progress bar while embedding.
            batch_size: Encoder batch size.

        Raises:
            ValueError: for an invalid name.
        """
        check_name(name)
        from guardrails.encoders import sentence_encoder

        texts = [embedding_text(r) for r in records]
        if texts:
            enc = sentence_encoder(encoder_name)
            vecs = enc.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
            vecs = np.asarray(vecs, dtype=np.float32)
        else:
            vecs = np.zeros((0, 384), dtype=np.float32)
        return cls(name, records, vecs, encoder_name=encoder_name)

    def save(self, home: str | Path | None = None) -> Path:
        """Write the database to ``<home>/citations/<name>/`` (replacing an older one); returns the directory."""
        directory = citations_dir(home) / check_name(self.name)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "records.jsonl.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in self.records:
                fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
        tmp.replace(directory / "records.jsonl")
        np.save(directory / "embeddings.npy", self.embeddings.astype(np.float16))
        meta = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "records": len(self.records),
            "encoder": self.encoder_name,
            "dim": int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 384,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, name: str, home: str | Path | None = None, progress: bool = False) -> CitationDatabase:
        """Load the database ``name`` saved under ``<home>/citations/``.

        Raises:
            FileNotFoundError: when no such database exists (create it with
                ``greenlist citations load FILE --name NAME``).
        """
        directory = citations_dir(home) / check_name(name)
        if not (directory / "meta.json").is_file():
            raise FileNotFoundError(
                f"no citation database {name!r} under {directory.parent}; "
                f"create it with: greenlist citations load FILE --name {name}"
            )
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        lines = (directory / "records.jsonl").read_text(encoding="utf-8").splitlines()
        if progress:
            from tqdm import tqdm

            lines = tqdm(lines, desc=f"loading {name}", unit="rec", disable=None)
        records = [CitationRecord.from_dict(json.loads(line)) for line in lines if line.strip()]
        vecs = np.load(directory / "embeddings.npy").astype(np.float32)
        return cls(name, records, vecs, encoder_name=meta.get("encoder"))

    @classmethod
    def merge(cls, databases: Iterable[CitationDatabase], name: str = "merged") -> CitationDatabase:
        """Concatenate several databases into one (records keep their ``source``).

        Raises:
            ValueError: when the databases were embedded with different encoders
                (rebuild them with the same encoder).
        """
        dbs = list(databases)
        if len(dbs) == 1:
            return dbs[0]
        encoders = {db.encoder_name for db in dbs}
        if len(encoders) > 1:
            raise ValueError(f"cannot merge citation databases embedded with different encoders: {encoders}")
        records = [r for db in dbs for r in db.records]
        dim = next((db.embeddings.shape[1] for db in dbs if db.embeddings.ndim == 2), 384)
        vecs = np.vstack([db.embeddings for db in dbs]) if dbs else np.zeros((0, dim), np.float32)
        return cls(name, records, vecs, encoder_name=encoders.pop() if encoders else None)


def list_databases(home: str | Path | None = None) -> list[dict]:
    """Metadata (``meta.json`` contents plus ``path``) of every database under ``<home>/citations/``, by name."""
    root = citations_dir(home)
    out = []
    if root.is_dir():
        for meta_path in sorted(root.glob("*/meta.json")):
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            meta["path"] = str(meta_path.parent)
            out.append(meta)
    return out


def load_databases(
    names: list[str] | None = None, home: str | Path | None = None, progress: bool = False
) -> CitationDatabase:
    """Load the named databases (``None`` = every saved one) merged into one.

    Raises:
        FileNotFoundError: when a named database is missing, or when ``names``
            is ``None`` and no database has been loaded yet (run
            ``greenlist citations load FILE``).
    """
    if names is None:
        names = [m["name"] for m in list_databases(home)]
        if not names:
            raise FileNotFoundError(
                f"no citation databases under {citations_dir(home)}; "
                "load one with: greenlist citations load FILE --name NAME"
            )
    dbs = [CitationDatabase.load(n, home, progress=progress) for n in names]
    return CitationDatabase.merge(dbs, name="+".join(names))
