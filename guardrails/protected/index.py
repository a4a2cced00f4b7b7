"""Protected-corpus store: documents → overlapping passages → MinHash → LSH, on disk.

Layout of one corpus, below ``greenlist_home()/corpora/<name>/``::

    meta.json         kind, shingling/LSH parameters, backend, documents
    version           random token rewritten last by every save (change detection)
    docs/<id>.npz     per document: shingle hashes (uint32) and token offsets
    lsh.npz | lsh.pkl the LSH store (numpy backend | datasketch dict storage);
                      nothing for datasketch's Redis storage (lives in Redis)

A document of ``n`` shingles is cut into passages of ``passage_len`` tokens
(``passage_len - k + 1`` shingles) every ``passage_stride`` tokens, so any
quote of at least ``passage_len + passage_stride`` tokens contains a whole
passage, and a shorter one still overlaps a passage by at least
``passage_len - passage_stride/2`` tokens. Passage ids are contiguous per
document and allocated once, so the passage table is never stored: it is
recomputed from the document length.

Adding is incremental: a file whose SHA-256 is already registered is skipped
(no-op), a changed file under the same name replaces its old passages, and new
files only add LSH entries. Removing a document deletes its passages from the
LSH store.

Long module: the on-disk corpus store (documents, passages, LSH, versioning) is one class whose methods keep the files consistent; splitting it would expose its invariants.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from guardrails.protected.lsh import DatasketchLSH, LSHStore, NumpyBandLSH
from guardrails.protected.shingling import Kind, TokenStream, file_sha256, language_for_path, shingle_hashes, tokens_for
from guardrails.protected.signatures import MinHasher

Backend = Literal["numpy", "datasketch"]
VERSION_FILE = "version"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class CorpusParams:
    """Shingling, passage and LSH parameters, fixed when a corpus is created.

    Attributes:
        kind: ``"prose"`` (word tokens) or ``"code"`` (normalised code tokens).
        k: Shingle size in tokens.
        num_perm: MinHash permutations.
        bands, rows: LSH banding (``bands * rows <= num_perm``).
        passage_len: Passage (and query window) length in tokens.
        passage_stride: Tokens between consecutive passage starts.
        seed: MinHash permutation seed.
        threshold: Default window containment that fires for this corpus
            (used when the policy sets no threshold for it).
    """

    kind: Kind = "prose"
    k: int = 5
    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    passage_len: int = 50
    passage_stride: int = 10
    seed: int = 1
    threshold: float = 0.3

    @classmethod
    def default(cls, kind: Kind) -> CorpusParams:
        """Defaults chosen by ``benchmarks/bench_protected.py`` for ``kind``.

        Raises:
            ValueError: for an unknown kind.
        """
        if kind == "prose":
            return cls(
                kind="prose", k=5, num_perm=128, bands=42, rows=3, passage_len=50, passage_stride=10, threshold=0.3
            )
        if kind == "code":
            return cls(
                kind="code", k=15, num_perm=128, bands=42, rows=3, passage_len=60, passage_stride=10, threshold=0.5
            )
        raise ValueError(f"unknown corpus kind {kind!r}; use 'prose' or 'code'")

    def validate(self) -> None:
        """Raise ``ValueError`` with the fix when the parameters are inconsistent."""
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands*rows={self.bands * self.rows} exceeds num_perm={self.num_perm}; "
                "lower bands or rows, or raise num_perm"
            )
        if not 0 < self.passage_stride <= self.passage_len:
            raise ValueError("passage_stride must be in (0, passage_len]")
        if self.passage_len < self.k:
            raise ValueError(f"passage_len={self.passage_len} must be >= shingle size k={self.k}")

    @property
    def passage_shingles(self) -> int:
        """Shingles per full passage: ``passage_len - k + 1``."""
        return self.passage_len - self.k + 1


def passage_bounds(n_shingles: int, params: CorpusParams) -> tuple[np.ndarray, np.ndarray]:
    """Shingle-index bounds ``[start, end)`` of the passages of a document.

    Args:
        n_shingles: Number of shingles of the document.
        params: Corpus parameters (passage length and stride).

    Returns:
        ``(starts, ends)``, two ``int64[p]`` arrays; the last passage is aligned
        to the end of the document so the tail is covered. Empty for ``n == 0``.
    """
    if n_shingles <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    length, stride = params.passage_shingles, params.passage_stride
    if n_shingles <= length:
        return np.array([0], np.int64), np.array([n_shingles], np.int64)
    starts = np.arange(0, n_shingles - length + 1, stride, dtype=np.int64)
    if starts[-1] + length < n_shingles:
        starts = np.append(starts, n_shingles - length)
    return starts, starts + length


@dataclass
class Document:
    """One registered document.

    Attributes:
        doc_id: Integer id inside the corpus.
        name: Display name (the path as given, or a caller-chosen name).
        sha256: Content hash of the document text (UTF-8).
        pid_start, pid_end: Its passage ids are ``range(pid_start, pid_end)``.
        n_tokens, n_chars: Sizes of the text.
        language: Lexer alias for code, ``None`` for prose.
    """

    doc_id: int
    name: str
    sha256: str
    pid_start: int
    pid_end: int
    n_tokens: int
    n_chars: int
    language: str | None = None


@dataclass
class DocData:
    """In-memory arrays of one document (loaded for verification)."""

    shingles: np.ndarray  # uint32[n_shingles]
    tok_starts: np.ndarray  # int32[n_tokens]
    tok_ends: np.ndarray  # int32[n_tokens]


@dataclass
class AddReport:
    """Result of :meth:`Corpus.add_texts`: names added, replaced, skipped, and passages added."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    passages: int = 0


def corpora_root(home: str | Path | None = None) -> Path:
    """Directory holding all corpora: ``<home>/corpora`` (``greenlist_home()`` by default)."""
    if home is None:
        from greenlist.home import greenlist_home

        base = greenlist_home()
    else:
        base = Path(home).expanduser()
    root = base / "corpora"
    root.mkdir(parents=True, exist_ok=True)
    return root


def corpus_version(name: str, home: str | Path | None = None) -> str | None:
    """Cheap change token of corpus ``name``: the content of its ``version`` file.

    :meth:`Corpus.save` rewrites that file (atomically, after ``meta.json``)
    with a new random token on every ``add``/``remove``; comparing tokens costs
    one small file read. Corpora saved before the file existed fall back to
    the ``(inode, mtime_ns, size)`` of ``meta.json``.

    Args:
        name: Corpus name.
        home: Greenlist home (``None``: ``greenlist_home()``).

    Returns:
        The token, or ``None`` when the corpus does not exist (removed, or
        not created yet).
    """
    directory = corpora_root(home) / name
    try:
        return (directory / VERSION_FILE).read_text("utf-8").strip()
    except FileNotFoundError:
        pass
    try:
        st = (directory / "meta.json").stat()
    except FileNotFoundError:
        return None
    return f"meta:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def list_corpora(home: str | Path | None = None) -> list[str]:
    """Names of all corpora registered below ``home``."""
    root = corpora_root(home)
    return sorted(p.parent.name for p in root.glob("*/meta.json"))


class Corpus:
    """A named protected corpus: documents, passages, MinHash signatures and an LSH store.

    Open with :meth:`open` or :meth:`create`; queries (:meth:`candidates`,
    :meth:`doc_of`) are thread-safe, writes take an internal lock.

    Args:
        directory: The corpus directory (``<root>/<name>``).
        params: Shingling and LSH parameters.
        backend: ``"numpy"`` (compact sorted-array banding, default) or
            ``"datasketch"`` (``MinHashLSH``; set ``storage_config`` for Redis).
        storage_config: datasketch storage config (only for that backend).
    """

    insert_batch = 50_000  # passages buffered before one LSH insert

    def __init__(
        self,
        directory: Path,
        params: CorpusParams,
        backend: Backend = "numpy",
        storage_config: dict[str, Any] | None = None,
    ) -> None:
        params.validate()
        self.directory = directory
        self.name = directory.name
        self.params = params
        self.backend = backend
        self.storage_config = storage_config
        self.hasher = MinHasher(params.num_perm, params.seed)
        self.documents: dict[int, Document] = {}
        self.data: dict[int, DocData] = {}
        self.next_pid = 0
        self.next_doc = 0
        self._lock = threading.RLock()
        self._pid_starts = np.zeros(0, np.int64)
        self._pid_docs = np.zeros(0, np.int64)
        self._pids_dirty = False
        if backend == "numpy":
            self.lsh: LSHStore = NumpyBandLSH.load(directory, params.bands, params.rows)
        elif backend == "datasketch":
            self.lsh = DatasketchLSH.load(directory, self.hasher, params.bands, params.rows, storage_config)
        else:
            raise ValueError(f"unknown LSH backend {backend!r}; use 'numpy' or 'datasketch'")

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        name: str,
        params: CorpusParams,
        home: str | Path | None = None,
        backend: Backend = "numpy",
        storage_config: dict[str, Any] | None = None,
    ) -> Corpus:
        """Create an empty corpus ``name`` (error if it exists).

        Args:
            name: Corpus name (letters, digits, ``_``, ``-``, ``.``; at most 64).
            params: Shingling, passage and LSH parameters, fixed from now on.
            home: Greenlist home (``None``: ``greenlist_home()``).
            backend: ``"numpy"`` or ``"datasketch"``.
            storage_config: datasketch storage config (Redis sharing).

        Returns:
            The new, saved, empty corpus.

        Raises:
            ValueError: for an invalid name, or when the corpus already exists
                (remove it first, or add to it with :meth:`open`).
        """
        if not _NAME.match(name):
            raise ValueError(f"invalid corpus name {name!r}: use letters, digits, '_', '-', '.' (max 64)")
        directory = corpora_root(home) / name
        if (directory / "meta.json").exists():
            raise ValueError(f"corpus {name!r} already exists in {directory.parent}; remove it first")
        (directory / "docs").mkdir(parents=True, exist_ok=True)
        corpus = cls(directory, params, backend, storage_config)
        corpus.save()
        return corpus

    @classmethod
    def open(cls, name: str, home: str | Path | None = None) -> Corpus:
        """Load corpus ``name`` (documents, arrays and LSH store) from disk.

        Args:
            name: Corpus name.
            home: Greenlist home (``None``: ``greenlist_home()``).

        Returns:
            The loaded corpus.

        Raises:
            FileNotFoundError: when no such corpus exists; create it with
                ``greenlist corpus add NAME PATH...``.
        """
        directory = corpora_root(home) / name
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"no protected corpus {name!r} in {directory.parent}; "
                f"create it with `greenlist corpus add {name} PATH... --kind prose|code`"
            )
        meta = json.loads(meta_path.read_text("utf-8"))
        corpus = cls(
            directory, CorpusParams(**meta["params"]), meta.get("backend", "numpy"), meta.get("storage_config")
        )
        corpus.next_pid = meta["next_pid"]
        corpus.next_doc = meta["next_doc"]
        for d in meta["documents"]:
            doc = Document(**d)
            corpus.documents[doc.doc_id] = doc
            with np.load(directory / "docs" / f"{doc.doc_id}.npz") as z:
                corpus.data[doc.doc_id] = DocData(z["shingles"], z["tok_starts"], z["tok_ends"])
        corpus._reindex_pids()
        return corpus

    def save(self) -> None:
        """Write the LSH store, ``meta.json`` and then the ``version`` file (each atomically replaced).

        The ``version`` file gets a fresh random token on every save, so a
        running :class:`~guardrails.protected.ProtectedContentGuardrail` that
        polls :func:`corpus_version` sees every ``add`` or ``remove``.
        """
        with self._lock:
            meta = {
                "name": self.name,
                "params": asdict(self.params),
                "backend": self.backend,
                "storage_config": _jsonable(self.storage_config),
                "next_pid": self.next_pid,
                "next_doc": self.next_doc,
                "documents": [asdict(d) for d in self.documents.values()],
            }
            self.lsh.save(self.directory)
            tmp = self.directory / "meta.tmp.json"
            tmp.write_text(json.dumps(meta, indent=1), "utf-8")
            tmp.replace(self.directory / "meta.json")
            # Written last: the commit point that running guardrails poll (corpus_version()).
            tmp = self.directory / "version.tmp"
            tmp.write_text(f"{time.time_ns()} {uuid.uuid4().hex}\n", "utf-8")
            tmp.replace(self.directory / VERSION_FILE)

    def _reindex_pids(self) -> None:
        docs = sorted(self.documents.values(), key=lambda d: d.pid_start)
        self._pid_starts = np.array([d.pid_start for d in docs], np.int64)
        self._pid_docs = np.array([d.doc_id for d in docs], np.int64)
        self._pids_dirty = False

    # ------------------------------------------------------------------ writes

    def add_texts(
        self,
        items: Iterable[tuple[str, str, str | None]],
        progress: Callable[[int], None] | None = None,
        save: bool = True,
    ) -> AddReport:
        """Add documents given as ``(name, text, language)``; unchanged ones are skipped.

        Args:
            items: Iterable of ``(name, text, language)``; ``language`` is the
                lexer alias for code corpora (``None`` → ``"python"``).
            progress: Called with the number of characters processed after each
                document (for a progress bar).
            save: Write the corpus to disk at the end.

        Returns:
            An :class:`AddReport`.
        """
        report = AddReport()
        by_name = {d.name: d for d in self.documents.values()}
        pending: list[tuple[np.ndarray, np.ndarray]] = []
        n_pending = 0

        def flush() -> None:
            """Insert the buffered passage signatures into the LSH store."""
            nonlocal n_pending
            if pending:
                self.lsh.insert(np.concatenate([i for i, _ in pending]), np.concatenate([s for _, s in pending]))
                pending.clear()
                n_pending = 0

        for name, text, language in items:
            sha = file_sha256(text.encode("utf-8"))
            old = by_name.get(name)
            if old is not None and old.sha256 == sha:
                report.skipped.append(name)
            else:
                if old is not None:
                    flush()
                    self.remove_document(name, save=False)
                    report.replaced.append(name)
                else:
                    report.added.append(name)
                lang = (language or "python") if self.params.kind == "code" else None
                stream = tokens_for(text, self.params.kind, lang or "python")
                doc, sigs = self._add_stream(name, sha, stream, len(text), lang)
                pending.append((np.arange(doc.pid_start, doc.pid_end, dtype=np.int64), sigs))
                n_pending += len(sigs)
                if n_pending >= self.insert_batch:
                    flush()
                by_name[name] = doc
                report.passages += doc.pid_end - doc.pid_start
            if progress:
                progress(len(text))
        flush()
        if save:
            self.save()
        return report

    def add_paths(
        self, paths: Iterable[str | Path], progress: Callable[[int], None] | None = None, save: bool = True
    ) -> AddReport:
        """Add files (directories are walked recursively; code corpora keep files Pygments can lex).

        Args:
            paths: Files or directories.
            progress: Called with the characters processed after each file.
            save: Write the corpus to disk at the end.

        Returns:
            An :class:`AddReport`.

        Raises:
            FileNotFoundError: when a path does not exist.
        """
        return self.add_texts(
            ((str(p), p.read_text("utf-8", errors="replace"), lang) for p, lang in self.expand_paths(paths)),
            progress,
            save,
        )

    def expand_paths(self, paths: Iterable[str | Path]) -> list[tuple[Path, str | None]]:
        """Expand directories into files, with the lexer alias of each code file.

        Args:
            paths: Files or directories.

        Returns:
            ``[(file, language)]``; ``language`` is ``None`` for prose corpora.

        Raises:
            FileNotFoundError: for a missing path, with the path in the message.
        """
        out: list[tuple[Path, str | None]] = []
        for raw in paths:
            p = Path(raw)
            if not p.exists():
                raise FileNotFoundError(f"{p} does not exist; pass existing files or directories")
            files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
            for f in files:
                if self.params.kind == "code":
                    try:
                        out.append((f, language_for_path(f)))
                    except ValueError:
                        if not p.is_dir():
                            raise
                elif not p.is_dir() or f.suffix in ("", ".txt", ".md", ".html", ".rst"):
                    out.append((f, None))
        return out

    def _add_stream(
        self, name: str, sha: str, stream: TokenStream, n_chars: int, language: str | None
    ) -> tuple[Document, np.ndarray]:
        """Register a document and return it with its passage signatures (not yet in the LSH)."""
        shingles = shingle_hashes(stream.tokens, self.params.k)
        starts, ends = passage_bounds(len(shingles), self.params)
        sigs = self.hasher.windows(shingles, starts, ends)
        with self._lock:
            doc = Document(
                self.next_doc, name, sha, self.next_pid, self.next_pid + len(starts), len(stream), n_chars, language
            )
            data = DocData(shingles, stream.starts.astype(np.int32), stream.ends.astype(np.int32))
            np.savez(
                self.directory / "docs" / f"{doc.doc_id}.npz",
                shingles=data.shingles,
                tok_starts=data.tok_starts,
                tok_ends=data.tok_ends,
            )
            self.documents[doc.doc_id] = doc
            self.data[doc.doc_id] = data
            self.next_doc += 1
            self.next_pid = doc.pid_end
            self._pids_dirty = True
        return doc, sigs

    def remove_document(self, name: str, save: bool = True) -> bool:
        """Remove the document called ``name`` and its passages from the LSH store.

        Args:
            name: Document name (the path as it was added).
            save: Write the corpus (and its ``version``) to disk afterwards.

        Returns:
            ``False`` when no such document exists.
        """
        with self._lock:
            doc = next((d for d in self.documents.values() if d.name == name), None)
            if doc is None:
                return False
            self.lsh.remove(np.arange(doc.pid_start, doc.pid_end, dtype=np.int64))
            del self.documents[doc.doc_id]
            del self.data[doc.doc_id]
            (self.directory / "docs" / f"{doc.doc_id}.npz").unlink(missing_ok=True)
            self._reindex_pids()
            if save:
                self.save()
            return True

    # ------------------------------------------------------------------ reads

    def doc_of(self, pids: np.ndarray) -> np.ndarray:
        """Document id of each passage id.

        Args:
            pids: ``int64[m]`` passage ids.

        Returns:
            ``int64[m]``: the document whose id range starts at or before each
            id (check ``pid < pid_end`` for ids of unknown documents, as
            :meth:`passage_spans` does).
        """
        if self._pids_dirty:
            with self._lock:
                self._reindex_pids()
        idx = np.searchsorted(self._pid_starts, pids, side="right") - 1
        return self._pid_docs[np.clip(idx, 0, None)]

    def passage_range(self, pid: int) -> tuple[int, int, int]:
        """Locate one passage.

        Args:
            pid: Passage id of a loaded document.

        Returns:
            ``(doc_id, shingle_start, shingle_end)``.

        Raises:
            KeyError: when no loaded document owns ``pid``.
        """
        doc = self.documents[int(self.doc_of(np.array([pid]))[0])]
        starts, ends = passage_bounds(len(self.data[doc.doc_id].shingles), self.params)
        j = pid - doc.pid_start
        return doc.doc_id, int(starts[j]), int(ends[j])

    def candidates(self, signatures: np.ndarray) -> list[np.ndarray]:
        """LSH candidate passage ids for each query signature.

        Args:
            signatures: ``uint32[w, num_perm]`` MinHash signatures.

        Returns:
            One ``int64`` array of passage ids per signature.
        """
        return self.lsh.query(signatures)

    def candidate_pairs(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All ``(window, passage id)`` LSH candidate pairs for ``uint32[w, num_perm]`` signatures.

        Returns:
            Two ``int64[m]`` arrays sorted by window, then passage id (the
            numpy store computes them without a Python loop; other stores are
            flattened from :meth:`candidates`).
        """
        if hasattr(self.lsh, "query_pairs"):
            return self.lsh.query_pairs(signatures)
        per = self.lsh.query(signatures)
        if not per or not any(len(c) for c in per):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        fw = np.concatenate([np.full(len(c), i, np.int64) for i, c in enumerate(per)])
        return fw, np.concatenate([np.asarray(c, np.int64) for c in per])

    def passage_spans(self, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised :meth:`passage_range`: locate many passage ids at once.

        Args:
            pids: ``int64[m]`` passage ids.

        Returns:
            ``(doc_ids, starts, ends, valid)``: document id and shingle bounds
            ``[start, end)`` of each passage, and a boolean mask that is
            ``False`` for ids no loaded document owns (removed documents, or
            passages another replica added to a shared Redis index since this
            corpus was loaded); the other arrays are meaningless there.
        """
        pids = np.asarray(pids, np.int64)
        docs = self.doc_of(pids)
        valid = np.zeros(len(pids), bool)
        starts = np.zeros(len(pids), np.int64)
        ends = np.zeros(len(pids), np.int64)
        length, stride = self.params.passage_shingles, self.params.passage_stride
        for d in np.unique(docs):
            doc = self.documents.get(int(d))
            data = self.data.get(int(d))
            if doc is None or data is None:
                continue
            sel = (docs == d) & (pids >= doc.pid_start) & (pids < doc.pid_end)
            n = len(data.shingles)
            # passage_bounds(): starts every `stride`, the last one aligned to the end.
            st = np.minimum((pids[sel] - doc.pid_start) * stride, max(n - length, 0))
            starts[sel] = st
            ends[sel] = np.minimum(st + length, n)
            valid[sel] = True
        return docs, starts, ends, valid

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: documents, passages, tokens, characters, bytes on disk, parameters."""
        disk = sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file())
        return {
            "name": self.name,
            "kind": self.params.kind,
            "backend": self.backend,
            "documents": len(self.documents),
            "passages": sum(d.pid_end - d.pid_start for d in self.documents.values()),
            "lsh_entries": len(self.lsh),
            "tokens": sum(d.n_tokens for d in self.documents.values()),
            "chars": sum(d.n_chars for d in self.documents.values()),
            "disk_bytes": disk,
            "params": asdict(self.params),
        }


def delete_corpus(name: str, home: str | Path | None = None) -> bool:
    """Delete corpus ``name`` (its directory, and its Redis keys when it uses Redis).

    Returns:
        ``False`` when no such corpus exists.
    """
    import shutil

    directory = corpora_root(home) / name
    if not (directory / "meta.json").exists():
        return False
    meta = json.loads((directory / "meta.json").read_text("utf-8"))
    if (meta.get("storage_config") or {}).get("type") == "redis":
        corpus = Corpus.open(name, home)
        for doc in list(corpus.documents.values()):
            corpus.remove_document(doc.name, save=False)
    shutil.rmtree(directory)
    return True


def _jsonable(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: _jsonable(v) for k, v in cfg.items()}
    if isinstance(cfg, bytes):
        return cfg.decode()
    return cfg
