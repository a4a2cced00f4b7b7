"""Batched green lists in torch: the watermark of a whole batch of rows in one pass, on any device.

Kirchenbauer et al., "A Watermark for Large Language Models", ICML 2023,
Algorithm 2 (soft red list): add δ (delta) to the logits of the green list of
each row. This module computes the green lists of *rows × vocab* at once, bit
for bit the ones :meth:`watermark.scheme.GreenListScheme.green_mask` computes
one row at a time in NumPy (same keyed SplitMix64 hash, γ threshold, seeding
schemes ``lefthash`` / ``selfhash`` / ``robust`` and context width), so text
generated through it (the vLLM plugin, :mod:`watermark.vllm_plugin`) verifies
with the ordinary detector.

torch has no unsigned 64-bit arithmetic on every device, so the hash runs on
``int64`` holding the same bits: multiplication and addition wrap identically
in two's complement, right shifts are made logical with a mask, and unsigned
comparisons (the γ threshold, the min-hash of ``selfhash``) flip the sign bit
first. Schemes that are not :class:`~watermark.scheme.GreenListScheme` (the
transformers-compatible ``transformers-lefthash`` keys) fall back to their own
per-row ``green_mask``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from watermark.scheme import GreenListScheme, Scheme

_SIGN = -(2**63)  # int64 with only the sign bit set: x ^ _SIGN maps unsigned order onto signed order


def _signed(value: int | np.uint64) -> int:
    """The int64 value with the same 64 bits as the unsigned ``value``."""
    value = int(value)
    return value - 2**64 if value >= 2**63 else value


_M1, _M2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of the 64 bits held by an ``int64`` tensor."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64_torch(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an ``int64`` tensor, bit-identical to :func:`watermark.scheme.mix64` on ``uint64``.

    Args:
        x: ``int64`` tensor of any shape, holding 64-bit words.

    Returns:
        ``int64`` tensor of the same shape.
    """
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def _umin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise unsigned minimum of the 64-bit words held by two ``int64`` tensors."""
    return torch.minimum(a ^ _SIGN, b ^ _SIGN) ^ _SIGN


class BatchedGreenList:
    """The green lists of one :class:`~watermark.scheme.GreenListScheme` for batches of rows, on one device.

    Args:
        scheme: The keyed scheme (key, γ, seeding scheme).
        vocab_size: Number of logits per row (the model's, possibly padded, vocabulary).
        device: Where the masks are computed (the logits' device).

    Raises:
        ValueError: for a non-positive ``vocab_size``.
    """

    def __init__(self, scheme: GreenListScheme, vocab_size: int, device: torch.device | str = "cpu") -> None:
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        self.scheme, self.vocab_size, self.device = scheme, int(vocab_size), torch.device(device)
        k0, k1 = scheme._subkeys  # noqa: SLF001 - the same keyed constants, by construction
        self._k0 = _signed(k0)
        self._threshold = _signed(scheme._threshold) ^ _SIGN  # noqa: SLF001 - compared in sign-flipped order
        self._vocab = torch.arange(self.vocab_size, dtype=torch.int64, device=self.device)
        self._vocab_hash = mix64_torch(self._vocab ^ _signed(k1))
        self._fixed: torch.Tensor | None = None
        if scheme.seeding_scheme == "robust":
            seed = _signed(scheme.robust_seed)
            self._fixed = (mix64_torch(self._vocab_hash ^ seed) ^ _SIGN) < self._threshold

    def _green(self, seeds: torch.Tensor) -> torch.Tensor:
        """Green membership ``H(seed, v) < γ·2^64`` for seeds of shape ``(rows, 1)`` or ``(rows, vocab)``."""
        return (mix64_torch(seeds ^ self._vocab_hash) ^ _SIGN) < self._threshold

    def mask(self, recent_ids: torch.Tensor) -> torch.Tensor:
        """Green lists of a batch of rows.

        Args:
            recent_ids: ``int64`` tensor ``(rows, k)``: each row's most recent
                token ids, oldest first, with ``k >= scheme.context_needed``
                (1 lefthash, 3 selfhash, 0 robust); only the last
                ``context_needed`` columns are read.

        Returns:
            ``bool`` tensor ``(rows, vocab_size)`` on ``device``: True where
            the token is green for that row's next position.

        Raises:
            ValueError: for a 1-D input or too few columns.
        """
        if recent_ids.dim() != 2:
            raise ValueError(f"recent_ids must have shape (rows, k), got {tuple(recent_ids.shape)}")
        rows, need = recent_ids.shape[0], self.scheme.context_needed
        if self._fixed is not None:
            return self._fixed.unsqueeze(0).expand(rows, -1).clone()
        if recent_ids.shape[1] < need:
            raise ValueError(
                f"{self.scheme.seeding_scheme} needs {need} context tokens per row, got {recent_ids.shape[1]}"
            )
        ctx = recent_ids[:, recent_ids.shape[1] - need :].to(device=self.device, dtype=torch.int64)
        if self.scheme.seeding_scheme == "lefthash":
            return self._green(mix64_torch(ctx[:, -1:] ^ self._k0))
        # selfhash: anchored min-hash over (x[t-3], x[t-2], x[t-1], candidate), the candidate included
        anchor = mix64_torch(ctx[:, :1] ^ self._k0)  # (rows, 1)
        pairs = mix64_torch(anchor + ctx)  # (rows, 3): H(w0, w_i) for the context tokens, w0 with itself included
        fixed = pairs[:, :1]
        for i in range(1, pairs.shape[1]):
            fixed = _umin(fixed, pairs[:, i : i + 1])
        seeds = _umin(mix64_torch(anchor + self._vocab), fixed)  # (rows, vocab)
        return self._green(seeds)


@functools.lru_cache(maxsize=32)
def batched_green_list(scheme: GreenListScheme, vocab_size: int, device: str = "cpu") -> BatchedGreenList:
    """A cached :class:`BatchedGreenList` per (scheme, vocabulary size, device)."""
    return BatchedGreenList(scheme, vocab_size, device)


def green_mask_batched(
    scheme: Scheme, recent_ids: torch.Tensor, vocab_size: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Green lists of a batch of rows for any scheme (see :meth:`BatchedGreenList.mask`).

    Args:
        scheme: A :class:`~watermark.scheme.GreenListScheme` (computed in torch)
            or any other :class:`~watermark.scheme.Scheme` (per-row fallback).
        recent_ids: ``int64`` tensor ``(rows, k)`` of each row's recent token
            ids, oldest first (``k >= context_needed`` of the scheme).
        vocab_size: Logits per row.
        device: Device of the result (default: that of ``recent_ids``).

    Returns:
        ``bool`` tensor ``(rows, vocab_size)``.
    """
    device = torch.device(device) if device is not None else recent_ids.device
    if isinstance(scheme, GreenListScheme):
        return batched_green_list(scheme, int(vocab_size), str(device)).mask(recent_ids)
    rows = [torch.from_numpy(scheme.green_mask(r, vocab_size).copy()) for r in recent_ids.cpu().tolist()]
    if not rows:
        return torch.zeros(0, vocab_size, dtype=torch.bool, device=device)
    return torch.stack(rows).to(device)


def watermark_logits(
    logits: torch.Tensor, recent_ids: torch.Tensor, scheme: Scheme, delta: float, *, chunk_rows: int = 64
) -> torch.Tensor:
    """Add δ to each row's green list: the batched form of :class:`watermark.processor.WatermarkLogitsProcessor`.

    Kirchenbauer et al., ICML 2023, Algorithm 2: ``l'_v = l_v + δ`` for every
    green token ``v`` of the row, ``l'_v = l_v`` otherwise.

    Args:
        logits: float tensor ``(rows, vocab)`` of raw logits.
        recent_ids: ``int64`` tensor ``(rows, k)``: each row's most recent token
            ids, oldest first, ``k >= scheme.context_needed``.
        scheme: The green-list scheme (key, γ, seeding scheme).
        delta: δ, the logit bias of green tokens (> 0; 2.0 is Greenlist's default).
        chunk_rows: Rows hashed at once (bounds the ``(chunk, vocab)`` int64
            temporaries: 64 rows × 152k vocabulary ≈ 78 MB each).

    Returns:
        A new tensor, ``logits`` plus δ on green entries (``logits`` is not modified).

    Raises:
        ValueError: for ``delta <= 0`` or mismatched row counts.
    """
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    if logits.dim() != 2 or recent_ids.shape[0] != logits.shape[0]:
        raise ValueError(
            f"logits (rows, vocab) and recent_ids (rows, k) must agree on rows, got "
            f"{tuple(logits.shape)} and {tuple(recent_ids.shape)}"
        )
    out = logits.clone()
    for start in range(0, logits.shape[0], chunk_rows):
        stop = start + chunk_rows
        mask = green_mask_batched(scheme, recent_ids[start:stop], logits.shape[1], logits.device)
        out[start:stop] += mask.to(logits.dtype) * float(delta)
    return out
