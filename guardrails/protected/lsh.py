"""LSH banding stores for MinHash signatures (Leskovec, Rajaraman & Ullman, MMDS ch. 3.4).

A signature of ``b·r`` values is cut into ``b`` bands of ``r`` rows; two sets
become candidates when all ``r`` rows of at least one band agree, which happens
with probability ``1 - (1 - J^r)^b`` for Jaccard similarity ``J`` (an S-curve
with its threshold near ``(1/b)^(1/r)``).

Two interchangeable stores:

* :class:`DatasketchLSH` — :class:`datasketch.MinHashLSH`, with its in-memory
  dict storage (pickled to disk) or its Redis storage, the documented way to
  share one index between gateway replicas::

      storage_config = {"type": "redis", "basename": b"greenlist:books",
                        "redis": {"host": "10.0.0.5", "port": 6379}}

* :class:`NumpyBandLSH` — the same banding in sorted ``uint64`` arrays with a
  bucket directory on the keys' top bits (lookups of all bands and windows in
  one vectorised search), ~16 bytes per band per passage instead of the
  ~350 bytes of Python dict+set entries: the default for large local corpora
  (see ``docs/benchmarks.md``, "Protected content", for the measured memory).

Both map a passage id (``int``) to candidate passage ids; both are safe for
concurrent queries once built (queries only read).

Long module: the numpy LSH store and the datasketch adapter implement one interface side by side, so their behaviour can be compared line by line.
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from datasketch import MinHashLSH

from guardrails.protected.signatures import MinHasher

_BAND_RNG = np.random.default_rng(0xBA4D)
_BAND_MULT = _BAND_RNG.integers(1, 2**63, size=(64, 64), dtype=np.uint64) * np.uint64(2) + np.uint64(1)


class LSHStore(Protocol):
    """What :class:`guardrails.protected.index.Corpus` needs from an LSH store."""

    def insert(self, ids: np.ndarray, signatures: np.ndarray) -> None:
        """Insert passages ``ids`` (``int64[n]``) with ``uint32[n, num_perm]`` signatures."""

    def remove(self, ids: np.ndarray) -> None:
        """Remove passages ``ids``."""

    def query(self, signatures: np.ndarray) -> list[np.ndarray]:
        """Candidate passage ids (``int64[m_i]``) for each of ``w`` query signatures."""

    def save(self, directory: Path) -> None:
        """Persist to ``directory`` (a no-op for Redis)."""

    def __len__(self) -> int:
        """Number of indexed passages."""


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Hash each band of each signature to one ``uint64``.

    Args:
        signatures: ``uint32[n, >= bands*rows]``.

    Returns:
        ``uint64[n, bands]``; equal keys mean equal bands (up to 2^-64 collisions).
    """
    sig = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    mult = _BAND_MULT[:bands, :rows][None, :, :]
    acc = (sig * mult).sum(axis=2, dtype=np.uint64) + np.arange(bands, dtype=np.uint64)[None, :]
    acc ^= acc >> np.uint64(31)
    acc *= np.uint64(0x94D049BB133111EB)
    acc ^= acc >> np.uint64(29)
    return acc


class NumpyBandLSH:
    """Banded LSH in sorted numpy arrays, appended in segments.

    Each :meth:`insert` adds a segment (per band: sorted keys + passage ids);
    segments are merged LSM-style (a new segment at least half the size of
    the previous one is merged into it), so there are O(log n) segments. Removal
    marks ids dead; dead ids are filtered at query time and dropped on save.

    Args:
        bands, rows: LSH banding parameters (``bands*rows <= num_perm``).
    """

    max_segments = 8

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = bands, rows
        self._segments: list[tuple[np.ndarray, np.ndarray]] = []  # keys[b, n] sorted, ids[b, n]
        self._dead: set[int] = set()
        self._dead_arr = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._lock = threading.Lock()
        self._dirs: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}  # id(keys) -> (keys, bits, dir)

    def __len__(self) -> int:
        return self._n - len(self._dead)

    def insert(self, ids: np.ndarray, signatures: np.ndarray) -> None:
        """Insert passages as a new sorted segment (merged LSM-style).

        Args:
            ids: ``int64[n]`` passage ids.
            signatures: ``uint32[n, num_perm]`` MinHash signatures.
        """
        if len(ids) == 0:
            return
        keys = band_keys(signatures, self.bands, self.rows).T  # [b, n]
        order = np.argsort(keys, axis=1, kind="stable")
        seg = (np.take_along_axis(keys, order, axis=1), np.asarray(ids, dtype=np.int64)[order])
        with self._lock:
            self._dirs.clear()
            self._segments.append(seg)
            self._n += len(ids)
            # LSM-style: merge while the newest segment is at least half the size
            # of the one before it, so total merge work is O(n log n).
            while len(self._segments) >= 2 and (
                2 * self._segments[-1][0].shape[1] >= self._segments[-2][0].shape[1]
                or len(self._segments) > self.max_segments
            ):
                last = self._segments.pop()
                prev = self._segments.pop()
                keys = np.concatenate([prev[0], last[0]], axis=1)
                ids_ = np.concatenate([prev[1], last[1]], axis=1)
                order = np.argsort(keys, axis=1, kind="stable")
                self._segments.append(
                    (np.take_along_axis(keys, order, axis=1), np.take_along_axis(ids_, order, axis=1))
                )

    def _merge(self) -> None:
        keys = np.concatenate([k for k, _ in self._segments], axis=1)
        ids = np.concatenate([i for _, i in self._segments], axis=1)
        if self._dead:
            alive = ~np.isin(ids[0], self._dead_arr)
            # ids rows are permutations of the same id set; filter each band separately.
            keep = ~np.isin(ids, self._dead_arr)
            keys = keys[keep].reshape(self.bands, -1)
            ids = ids[keep].reshape(self.bands, -1)
            self._n = int(alive.sum())
            self._dead.clear()
            self._dead_arr = np.zeros(0, dtype=np.int64)
        order = np.argsort(keys, axis=1, kind="stable")
        self._dirs.clear()
        self._segments = [(np.take_along_axis(keys, order, axis=1), np.take_along_axis(ids, order, axis=1))]

    def remove(self, ids: np.ndarray) -> None:
        """Mark passages removed (physically dropped at the next merge/save).

        Args:
            ids: ``int64[m]`` passage ids.
        """
        with self._lock:
            self._dead.update(int(i) for i in ids)
            self._dead_arr = np.fromiter(sorted(self._dead), dtype=np.int64)

    bucket_size = 16  # mean keys per directory bucket

    def _directory(self, keys: np.ndarray) -> tuple[int, np.ndarray]:
        """Bucket directory of one segment (built once, cached until the segments change).

        Band keys are hashes, so their top ``D`` bits are uniform; ``dir[b, t]``
        is the first position in band ``b`` whose key has top bits ``>= t``, so
        the keys with top bits ``t`` are ``keys[b, dir[b, t]:dir[b, t + 1]]``
        (about :attr:`bucket_size` of them).

        Args:
            keys: ``uint64[bands, n]`` sorted band keys of one segment.

        Returns:
            ``(D, dir)`` with ``dir`` of shape ``[bands, 2**D + 1]`` (int32 or int64).
        """
        cached = self._dirs.get(id(keys))
        if cached is not None and cached[0] is keys:
            return cached[1], cached[2]
        n = keys.shape[1]
        bits = int(min(24, max(1, np.ceil(np.log2(max(n / self.bucket_size, 2))))))
        bounds = np.arange(2**bits, dtype=np.uint64) << np.uint64(64 - bits)  # smallest key of each bucket
        dtype = np.int32 if n < 2**31 else np.int64
        directory = np.empty((keys.shape[0], 2**bits + 1), dtype=dtype)
        for j in range(keys.shape[0]):
            directory[j, :-1] = np.searchsorted(keys[j], bounds, side="left")
        directory[:, -1] = n
        self._dirs[id(keys)] = (keys, bits, directory)
        return bits, directory

    @staticmethod
    def _lower_bound(
        flat: np.ndarray, lo: np.ndarray, size: np.ndarray, needles: np.ndarray, strict: bool
    ) -> np.ndarray:
        """Vectorised binary search of many needles, each in its own small sorted range of ``flat``.

        Args:
            flat: 1-D sorted-by-range array.
            lo, size: Start and length of each needle's range (``int64``).
            needles: Values searched.
            strict: ``True``: first position with ``value >= needle`` (lower
                bound); ``False``: first with ``value > needle`` (upper bound).

        Returns:
            ``int64`` positions in ``flat``, in ``[lo, lo + size]``.
        """
        lo, size = lo.copy(), size.copy()
        last = len(flat) - 1
        while True:
            active = size > 0
            if not active.any():
                return lo
            half = size // 2
            mid = lo + half
            v = flat[np.minimum(mid, last)]
            go = ((v < needles) if strict else (v <= needles)) & active
            lo = np.where(go, mid + 1, lo)
            size = np.where(go, size - half - 1, half)

    def query_pairs(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All distinct ``(window, passage id)`` candidate pairs, fully vectorised.

        Each (window, band) key is found through the segment's bucket
        directory (:meth:`_directory`) and a branchless binary search inside
        its bucket, for all bands and windows at once: about two cache misses
        per lookup instead of ~20 for a binary search over a million keys.

        Args:
            signatures: ``uint32[w, num_perm]`` query signatures.

        Returns:
            ``(windows, ids)``: two ``int64[m]`` arrays sorted by window, then id;
            pair ``i`` says passage ``ids[i]`` shares at least one whole band
            with query signature ``windows[i]``. Removed ids are left out.
        """
        w = len(signatures)
        empty = np.zeros(0, dtype=np.int64)
        if w == 0:
            return empty, empty
        qk = band_keys(signatures, self.bands, self.rows)  # [w, b]
        found_w: list[np.ndarray] = []
        found_id: list[np.ndarray] = []
        band_of = np.broadcast_to(np.arange(self.bands, dtype=np.int64)[None, :], qk.shape).ravel()
        needles = qk.ravel()
        for keys, ids in list(self._segments):
            n = keys.shape[1]
            if n == 0:
                continue
            bits, directory = self._directory(keys)
            top = (needles >> np.uint64(64 - bits)).astype(np.int64)
            stride = directory.shape[1]
            dflat = directory.ravel()
            b_lo = dflat[band_of * stride + top].astype(np.int64)
            b_hi = dflat[band_of * stride + top + 1].astype(np.int64)
            flat = keys.ravel()
            base = band_of * n
            lo = self._lower_bound(flat, base + b_lo, b_hi - b_lo, needles, strict=True)
            hit = np.flatnonzero((lo < base + b_hi) & (flat[np.minimum(lo, flat.size - 1)] == needles))
            if len(hit) == 0:
                continue
            lo = lo[hit]
            hi = self._lower_bound(flat, lo, base[hit] + b_hi[hit] - lo, needles[hit], strict=False)
            counts = hi - lo
            total = int(counts.sum())
            # Expand the ranges [lo, hi) without a Python loop.
            first = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
            found_w.append(np.repeat(hit // self.bands, counts).astype(np.int64))
            found_id.append(ids.ravel()[first + np.arange(total)])
        if not found_w:
            return empty, empty
        fw = np.concatenate(found_w)
        fi = np.concatenate(found_id)
        if len(self._dead_arr):
            keep = ~np.isin(fi, self._dead_arr)
            fw, fi = fw[keep], fi[keep]
        span = int(fi.max()) + 1 if len(fi) else 1
        combined = np.unique(fw * span + fi)
        return combined // span, combined % span

    def query(self, signatures: np.ndarray) -> list[np.ndarray]:
        """Candidates for each query signature (``uint32[w, num_perm]``).

        Returns:
            One sorted ``int64`` array of passage ids per signature.
        """
        fw, fi = self.query_pairs(signatures)
        splits = np.searchsorted(fw, np.arange(len(signatures) + 1))
        return [fi[splits[q] : splits[q + 1]] for q in range(len(signatures))]

    def nbytes(self) -> int:
        """Bytes held by the key and id arrays."""
        return sum(k.nbytes + i.nbytes for k, i in self._segments)

    def save(self, directory: Path) -> None:
        """Write one merged segment to ``directory/lsh.npz`` (atomically replaced).

        Args:
            directory: The corpus directory.
        """
        with self._lock:
            if len(self._segments) > 1 or self._dead:
                self._merge()
            keys, ids = (
                self._segments[0]
                if self._segments
                else (np.zeros((self.bands, 0), np.uint64), np.zeros((self.bands, 0), np.int64))
            )
        tmp = directory / "lsh.tmp.npz"
        np.savez(tmp, keys=keys, ids=ids)
        tmp.replace(directory / "lsh.npz")

    @classmethod
    def load(cls, directory: Path, bands: int, rows: int) -> NumpyBandLSH:
        """Load a store written by :meth:`save`.

        Args:
            directory: The corpus directory.
            bands, rows: Banding parameters of the corpus.

        Returns:
            The store (empty when ``lsh.npz`` is absent).
        """
        store = cls(bands, rows)
        path = directory / "lsh.npz"
        if path.exists():
            with np.load(path) as z:
                keys, ids = z["keys"], z["ids"]
            if keys.shape[1]:
                store._segments = [(keys, ids)]
                store._n = keys.shape[1]
                store._directory(keys)  # now, not on the first query (~0.5 s per million passages)
        return store


class DatasketchLSH:
    """:class:`datasketch.MinHashLSH` behind the :class:`LSHStore` interface.

    Args:
        hasher: The :class:`MinHasher` whose signatures are inserted.
        bands, rows: Banding parameters, passed as ``params=(bands, rows)``.
        storage_config: datasketch storage config; ``None`` or
            ``{"type": "dict"}`` keeps the index in memory (pickled to
            ``lsh.pkl`` on save); ``{"type": "redis", "basename": b"...",
            "redis": {"host": ..., "port": ...}}`` keeps it in Redis, shared by
            every gateway replica that opens the same corpus.
    """

    def __init__(self, hasher: MinHasher, bands: int, rows: int, storage_config: dict[str, Any] | None = None) -> None:
        self.hasher = hasher
        self.storage_config = storage_config or {"type": "dict"}
        self.lsh = MinHashLSH(
            num_perm=hasher.num_perm, params=(bands, rows), storage_config=_redis_config(self.storage_config)
        )

    @property
    def is_redis(self) -> bool:
        """True when the index lives in Redis."""
        return self.storage_config.get("type") == "redis"

    def __len__(self) -> int:
        return len(self.lsh.keys.keys()) if self.is_redis else len(self.lsh.keys)

    def insert(self, ids: np.ndarray, signatures: np.ndarray) -> None:
        """Insert passages with a datasketch insertion session (batched for Redis)."""
        with self.lsh.insertion_session(buffer_size=50_000) as session:
            for pid, sig in zip(ids, signatures, strict=False):
                session.insert(int(pid), self.hasher.lean(sig), check_duplication=False)

    def remove(self, ids: np.ndarray) -> None:
        """Remove passages (ids not present are ignored)."""
        for pid in ids:
            if self.lsh.__contains__(int(pid)):
                self.lsh.remove(int(pid))

    def query(self, signatures: np.ndarray) -> list[np.ndarray]:
        """Query each signature with ``MinHashLSH.query``.

        Args:
            signatures: ``uint32[w, num_perm]`` MinHash signatures.

        Returns:
            One sorted ``int64`` array of passage ids per signature.
        """
        return [
            np.asarray(sorted(int(k) for k in self.lsh.query(self.hasher.lean(s))), dtype=np.int64) for s in signatures
        ]

    def save(self, directory: Path) -> None:
        """Pickle the dict-storage index to ``directory/lsh.pkl``; Redis persists itself."""
        if self.is_redis:
            return
        tmp = directory / "lsh.tmp.pkl"
        with open(tmp, "wb") as f:
            pickle.dump(self.lsh, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(directory / "lsh.pkl")

    @classmethod
    def load(
        cls, directory: Path, hasher: MinHasher, bands: int, rows: int, storage_config: dict[str, Any] | None
    ) -> DatasketchLSH:
        """Re-open a saved dict index or reconnect to a Redis one."""
        store = cls(hasher, bands, rows, storage_config)
        path = directory / "lsh.pkl"
        if not store.is_redis and path.exists():
            with open(path, "rb") as f:
                store.lsh = pickle.load(f)
        return store


def _redis_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """datasketch wants ``basename`` as bytes; accept a str from YAML/JSON."""
    out = dict(cfg)
    if isinstance(out.get("basename"), str):
        out["basename"] = out["basename"].encode()
    return out
