"""MinHash signatures of many overlapping shingle windows at once.

A MinHash signature (Broder 1997) of a shingle set ``S`` is, for each of
``num_perm`` random permutations ``π_i``, the value ``min_{s∈S} π_i(s)``; the
fraction of equal coordinates of two signatures is an unbiased estimate of
the sets' Jaccard similarity ``|A∩B| / |A∪B|``.

We use datasketch's ``affine32`` scheme (the default since datasketch 2.0):
``π_i(h) = a_i · fmix32(h) + b_i  (mod 2^32)`` with the permutation parameters
of ``datasketch.MinHash(num_perm, seed)``. :class:`MinHasher` applies the
permutations once per shingle of a document and then takes window minima with
``numpy.minimum.reduceat``, which is much faster than one ``MinHash.bulk``
object per overlapping passage yet gives bit-identical hash values (checked
in ``tests/test_protected.py`` against ``MinHash.bulk``), so the signatures can
be wrapped in :class:`datasketch.LeanMinHash` and used with
:class:`datasketch.MinHashLSH` directly.
"""

from __future__ import annotations

import numpy as np
from datasketch import LeanMinHash, MinHash

SCHEME = "affine32"
_U32_MAX = np.uint32(0xFFFFFFFF)


def identity_hash(value: int) -> int:
    """Identity ``hashfunc`` for datasketch: our shingles are already 32-bit hashes."""
    return int(value)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (the pre-mix datasketch applies to inputs).

    Args:
        h: ``uint32`` array of any shape.

    Returns:
        ``uint32`` array of the same shape.
    """
    h = h.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


class MinHasher:
    """Computes datasketch-compatible MinHash signatures for shingle windows.

    Args:
        num_perm: Number of permutations (signature length). The standard error
            of the Jaccard estimate is about ``sqrt(J(1-J)/num_perm)``.
        seed: Permutation seed; index and queries must use the same one.
    """

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        self.num_perm = num_perm
        self.seed = seed
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        self._a = np.asarray(a, dtype=np.uint32)
        self._b = np.asarray(b, dtype=np.uint32)

    def permuted(self, shingles: np.ndarray) -> np.ndarray:
        """Apply all permutations to each shingle hash.

        Args:
            shingles: ``uint32[n]`` shingle hashes.

        Returns:
            ``uint32[n, num_perm]``.
        """
        hv = fmix32(np.asarray(shingles, dtype=np.uint32))[:, None]
        return hv * self._a[None, :] + self._b[None, :]

    def windows(self, shingles: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Signatures of the shingle windows ``shingles[starts[i]:ends[i]]``.

        Args:
            shingles: ``uint32[n]`` shingle hashes of one document or query.
            starts, ends: ``int[w]`` window bounds with ``0 <= start < end <= n``.

        Returns:
            ``uint32[w, num_perm]`` MinHash values, identical to
            ``MinHash.bulk([set(shingles[s:e]) ...], hashfunc=identity_hash)``.
        """
        w = len(starts)
        if w == 0:
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        phv = self.permuted(shingles)
        phv = np.vstack([phv, np.full((1, self.num_perm), _U32_MAX, dtype=np.uint32)])
        idx = np.empty(2 * w, dtype=np.int64)
        idx[0::2] = starts
        idx[1::2] = ends
        return np.minimum.reduceat(phv, idx, axis=0)[0::2]

    def lean(self, signature: np.ndarray) -> LeanMinHash:
        """Wrap one ``uint32[num_perm]`` signature as a datasketch ``LeanMinHash``."""
        return LeanMinHash(seed=self.seed, hashvalues=signature, scheme=SCHEME)

    def bulk(self, shingle_sets: list[np.ndarray]) -> list[LeanMinHash]:
        """Reference path: datasketch ``MinHash.bulk`` over whole shingle sets.

        Args:
            shingle_sets: One ``uint32`` array of shingle hashes per set.

        Returns:
            One ``LeanMinHash`` per set (slower than :meth:`windows`; used for
            checks and small inputs).
        """
        mhs = MinHash.bulk(
            [[int(x) for x in s] for s in shingle_sets],
            num_perm=self.num_perm,
            seed=self.seed,
            hashfunc=identity_hash,
            scheme=SCHEME,
        )
        return [LeanMinHash(m) for m in mhs]
