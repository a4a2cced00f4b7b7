"""Watermark detection by the one-proportion z-test.

Kirchenbauer et al., ICML 2023, Section 4: with T scored tokens of which
``|s|_G`` are green, ``z = (|s|_G - γT) / sqrt(T γ (1 - γ))``; the p-value is the
standard normal survival function of z. Following the reference
implementation (``ignore_repeated_ngrams=True``), every distinct n-gram
(context + token) is scored once, so repeated phrases cannot inflate z.
For the ``robust`` (Unigram-Watermark) scheme the n-gram is the token itself,
so each distinct token is scored once, as Zhao et al. ("Provable Robust
Watermarking for AI-Generated Text", ICLR 2024, Section 3) prescribe: with one
fixed green list a repeated token would otherwise count its colour again, the
scored positions would not be independent, and the z-test would be invalid.

The p-value and the verdict use the exact binomial test instead of the normal
approximation (Fernandez et al., "Three Bricks to Consolidate Watermarks for
Large Language Models", WIFS 2023): under the null hypothesis the green count
is Binomial(T, γ), and for the short texts third parties verify (T of 50-300)
the normal tail is far too light. Measured on 50,000 (human paragraph, random
key) pairs: ``z >= 4`` happened at a rate of 1.2e-4, four times the nominal
3.2e-5; the exact test at the same level gave 4e-5. ``z_threshold`` therefore
sets the test's level ``α = P(Z >= z_threshold)`` (3.2e-5 for 4.0) and a text
is called watermarked when its exact p-value is at most α.

Scoring of the ``robust`` scheme (issue #20, measured in ``docs/benchmarks.md``,
"Watermark seeding schemes"): each distinct token still has one colour, an
independent Bernoulli(γ) over the key under the null hypothesis, but it is
*weighted* by how often it occurs, capped: ``w_v = min(count_v, repeat_cap)``
(``ROBUST_REPEAT_CAP`` = 3), and the statistic is ``S = Σ_v w_v g_v``. The text
(hence every ``w_v``) does not depend on the key, so the exact null distribution
of S is the convolution of ``k · Binomial(n_k, γ)`` over the distinct weights k
(``n_k`` tokens of weight k) and the test stays exact; the z-score uses the
matching variance ``γ(1-γ) Σ_v w_v²``. Repeating a token therefore cannot fake
a watermark (repeating every token of a text the same number of times leaves z
and p unchanged), while a token the watermarked model chose several times,
which is more likely green, counts up to three times. The verifier also skips
the ten most frequent English tokens (:data:`ROBUST_SKIPPED_TOKENS`, resolved
with the verifying tokenizer by :func:`skipped_token_ids`): they occur in
almost every text, carry little watermark signal (the model rarely has a choice
about them), and with one fixed list their colours are the same in every text,
so a key that happens to colour them green shifts the z of *all* human text.
With ``repeat_cap = 1`` and nothing skipped (lefthash, selfhash) this is exactly
the one-count-per-distinct-n-gram binomial test above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import binom

from watermark.scheme import Scheme

TokenStatus = Literal["green", "red", "ignored", "context"]

ROBUST_REPEAT_CAP = 3
"""Most times one distinct token counts in the ``robust`` scheme's test (see module docstring)."""
REPEAT_CAP: dict[str, int] = {"robust": ROBUST_REPEAT_CAP}
"""Repeat cap per seeding scheme; schemes not listed count each distinct n-gram once."""
ROBUST_SKIPPED_TOKENS: tuple[str, ...] = (",", ".", " the", " and", " to", " of", " I", " a", " in", " was")
"""Tokens the ``robust`` verifier does not score: the ten most frequent tokens of the human text of
``../shared/data/human_text/`` under SmolLM2's tokenizer (6.2% to 1.0% of all tokens each, present in 78-100% of
200-token windows), as strings so that any tokenizer resolves them (:func:`skipped_token_ids`). Key-independent,
so the test stays exact; English-specific."""


@dataclass(frozen=True)
class Detection:
    """Result of scoring one token sequence.

    Attributes:
        num_tokens_scored: T, positions scored: distinct n-grams, each
            counted up to the repeat cap (once for lefthash / selfhash).
        num_green_tokens: green positions among them.
        green_fraction: ``num_green_tokens / T`` (0 when T = 0).
        z_score: the one-proportion z statistic (0 when T = 0); for weighted
            counts (``robust``) with the variance ``γ(1-γ) Σ w_v²``.
        p_value: exact binomial ``P(X >= num_green_tokens)`` for
            ``X ~ Binomial(T, γ)`` under the null hypothesis (1 when T = 0);
            for weighted counts the exact weighted tail (:func:`weighted_p_value`).
        watermarked: ``p_value <= P(Z >= z_threshold)``, or None when T is
            below the minimum.
        verdict: ``"watermarked"``, ``"not_watermarked"`` or ``"too_short"``.
        z_threshold: the threshold the verdict used.
        statuses: per input token, ``green``, ``red``, ``ignored`` (repeated
            n-gram beyond the repeat cap, or a skipped token) or ``context`` (too early to have a full seeding window).
    """

    num_tokens_scored: int
    num_green_tokens: int
    green_fraction: float
    z_score: float
    p_value: float
    watermarked: bool | None
    verdict: str
    z_threshold: float
    statuses: tuple[TokenStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without per-token statuses)."""
        return {
            "watermarked": self.watermarked,
            "verdict": self.verdict,
            "z_score": self.z_score,
            "p_value": self.p_value,
            "num_tokens_scored": self.num_tokens_scored,
            "num_green_tokens": self.num_green_tokens,
            "green_fraction": self.green_fraction,
            "z_threshold": self.z_threshold,
        }


def z_score(green: int | np.ndarray, total: int | np.ndarray, gamma: float) -> float | np.ndarray:
    """One-proportion z statistic for ``green`` successes out of ``total`` at rate ``gamma``."""
    return (green - gamma * total) / np.sqrt(np.maximum(total, 1) * gamma * (1.0 - gamma))


def normal_sf(z: float) -> float:
    """Standard normal survival function ``P(Z >= z)``: the level α a z threshold stands for."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def skipped_token_ids(tokenizer: Callable[..., Any], tokens: tuple[str, ...] = ROBUST_SKIPPED_TOKENS) -> frozenset[int]:
    """Token ids of ``tokens`` under ``tokenizer``: the ids the ``robust`` detector skips.

    Args:
        tokenizer: A callable tokenizer (``tokenizer(text, add_special_tokens=False)["input_ids"]``: a Hugging
            Face tokenizer or :class:`gateway.backends.loading.TokenizerFile`).
        tokens: The token strings (default :data:`ROBUST_SKIPPED_TOKENS`).

    Returns:
        The ids of the strings that are one token in this tokenizer (others are left out).
    """
    ids = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in tokens)
    return frozenset(int(i[0]) for i in ids if len(i) == 1)


def weighted_p_value(weights: np.ndarray, green: np.ndarray, gamma: float) -> float:
    """Exact one-sided p-value ``P(S >= s)`` of a weighted green count.

    Under the null hypothesis ``S = Σ_i w_i X_i`` with independent ``X_i ~ Bernoulli(γ)``; its distribution is
    the convolution over the distinct weights k of ``k · Binomial(n_k, γ)``. With every weight 1 this is
    :func:`binomial_p_value`.

    Args:
        weights: Positive integer weight of each scored unit (distinct token), shape ``(n,)``.
        green: Its colour (bool), shape ``(n,)``.
        gamma: γ, the green-list fraction.

    Returns:
        The p-value in [0, 1] (1.0 for no units).
    """
    weights = np.asarray(weights, dtype=np.int64)
    green = np.asarray(green, dtype=bool)
    if weights.size == 0:
        return 1.0
    observed = int(weights[green].sum())
    if np.all(weights == 1):
        return binomial_p_value(observed, int(weights.size), gamma)
    pmf = np.ones(1)
    for k in np.unique(weights):
        n = int((weights == k).sum())
        spread = np.zeros(int(k) * n + 1)
        spread[:: int(k)] = binom.pmf(np.arange(n + 1), n, gamma)
        pmf = np.convolve(pmf, spread)
    return float(min(1.0, pmf[observed:].sum()))


def binomial_p_value(green: int, total: int, gamma: float) -> float:
    """Exact one-sided p-value ``P(X >= green)`` for ``X ~ Binomial(total, gamma)``.

    Args:
        green: green tokens counted (|s|_G).
        total: tokens scored (T); 0 gives 1.0.
        gamma: γ, the green-list fraction.

    Returns:
        The p-value in [0, 1].
    """
    if total <= 0:
        return 1.0
    return float(binom.sf(green - 1, total, gamma))


class WatermarkDetector:
    """Scores token sequences for the green-list watermark of one key.

    Args:
        scheme: The green-list scheme (key, γ, seeding scheme).
        z_threshold: sets the test's level ``α = P(Z >= z_threshold)`` (4.0 in
            the paper: α = 3.2e-5, the false-positive rate per text); the
            verdict compares the exact binomial p-value with α.
        min_tokens: minimum T to give a verdict; below it the verdict is
            ``too_short``.
        repeat_cap: most times one distinct n-gram counts (its weight is
            ``min(count, repeat_cap)``, see module docstring); None takes the
            scheme's (:data:`REPEAT_CAP`: 3 for ``robust``, else 1).
        skip_ids: token ids never scored (status ``ignored``), e.g.
            :func:`skipped_token_ids` for ``robust``; they must not depend on
            the key.

    Raises:
        ValueError: for ``min_tokens < 1`` or ``repeat_cap < 1``.
    """

    def __init__(
        self,
        scheme: Scheme,
        z_threshold: float = 4.0,
        min_tokens: int = 16,
        *,
        repeat_cap: int | None = None,
        skip_ids: Collection[int] = (),
    ) -> None:
        if min_tokens < 1:
            raise ValueError("min_tokens must be at least 1")
        self.scheme = scheme
        self.z_threshold = z_threshold
        self.min_tokens = min_tokens
        self.repeat_cap = REPEAT_CAP.get(scheme.seeding_scheme, 1) if repeat_cap is None else int(repeat_cap)
        if self.repeat_cap < 1:
            raise ValueError(f"repeat_cap must be at least 1, got {self.repeat_cap}")
        self.skip_ids = np.array(sorted(skip_ids), dtype=np.int64)

    def colours(self, token_ids: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-position colour of a sequence.

        Args:
            token_ids: 1-D token ids of length N.

        Returns:
            ``(green, scored)``: two ``bool`` arrays of shape ``(N,)``. ``scored``
            is True at the first ``repeat_cap`` occurrences of each distinct
            n-gram (the first only, for lefthash and selfhash) whose token is
            not in ``skip_ids``; ``green`` is the colour there (False elsewhere).
        """
        green, scored, _, _ = self._score(token_ids)
        return green, scored

    def _score(self, token_ids: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(green, scored)`` per position (see :meth:`colours`) and ``(weights, colour)`` per distinct n-gram."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        n = self.scheme.ngram_len
        green = np.zeros(ids.shape[0], dtype=bool)
        scored = np.zeros(ids.shape[0], dtype=bool)
        if ids.shape[0] < n:
            return green, scored, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        ngrams = np.lib.stride_tricks.sliding_window_view(ids, n)
        _, first, inverse, counts = np.unique(
            ngrams, axis=0, return_index=True, return_inverse=True, return_counts=True
        )
        inverse = inverse.reshape(-1)
        keep = ~np.isin(ngrams[first, -1], self.skip_ids)
        colour = self.scheme.ngram_green(ngrams[first])
        if self.repeat_cap == 1:
            positions = first[keep]
        else:  # occurrence rank of every position among equal n-grams, stable in position order
            order = np.argsort(inverse, kind="stable")
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            rank = np.empty_like(inverse)
            rank[order] = np.arange(inverse.size) - np.repeat(starts, counts)
            positions = np.flatnonzero((rank < self.repeat_cap) & keep[inverse])
        scored[positions + (n - 1)] = True
        green[positions + (n - 1)] = colour[inverse[positions]]
        weights = np.minimum(counts, self.repeat_cap)[keep]
        return green, scored, weights, colour[keep]

    def detect(self, token_ids: list[int] | np.ndarray) -> Detection:
        """Run the test on one token sequence (see module docstring).

        ``num_tokens_scored`` is the weighted count ``T = Σ w_v`` (scored positions), ``num_green_tokens`` the
        weighted green count, ``z = (G - γT) / sqrt(γ(1-γ) Σ w_v²)`` and the p-value exact
        (:func:`weighted_p_value`); with ``repeat_cap = 1`` these are the distinct-n-gram binomial test.
        """
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        green, scored, weights, colour = self._score(ids)
        total, hits = int(scored.sum()), int(green.sum())
        gamma = self.scheme.gamma
        if not total:
            z = 0.0
        elif np.all(weights == 1):
            z = float(z_score(hits, total, gamma))
        else:
            z = (hits - gamma * total) / math.sqrt(
                gamma * (1.0 - gamma) * float((weights.astype(np.float64) ** 2).sum())
            )
        p = weighted_p_value(weights, colour, gamma)
        statuses = _statuses(green, scored, self.scheme.ngram_len)
        if total < self.min_tokens:
            watermarked, verdict = None, "too_short"
        else:
            watermarked = p <= normal_sf(self.z_threshold)
            verdict = "watermarked" if watermarked else "not_watermarked"
        return Detection(
            num_tokens_scored=total,
            num_green_tokens=hits,
            green_fraction=hits / total if total else 0.0,
            z_score=z,
            p_value=p,
            watermarked=watermarked,
            verdict=verdict,
            z_threshold=self.z_threshold,
            statuses=statuses,
        )


def _statuses(green: np.ndarray, scored: np.ndarray, ngram_len: int) -> tuple[TokenStatus, ...]:
    out: list[TokenStatus] = []
    for i, (g, s) in enumerate(zip(green.tolist(), scored.tolist(), strict=True)):
        if i < ngram_len - 1:
            out.append("context")
        elif not s:
            out.append("ignored")
        else:
            out.append("green" if g else "red")
    return tuple(out)
