"""WinMax: windowed detection for texts where only part is watermarked.

Kirchenbauer et al., "On the Reliability of Watermarks for Large Language
Models", ICLR 2024, Section 4 ("WinMax"): compute the z-score of every window
of consecutive scored tokens, for a range of window sizes, and take the
maximum. A paragraph of watermarked text pasted into a human essay then stands
out even though the whole-text z-score is diluted.

The maximum of many z-scores is not standard normal, so its threshold is not
4.0: :func:`winmax_threshold` gives the threshold that keeps the false-positive
rate at ``WINMAX_FPR`` for a text of T scored tokens. The table was computed by
Monte Carlo under the null hypothesis (each distinct n-gram green with
probability γ, independently: what the keyed hash gives any text written
without the key) by ``python -m watermark.calibrate``, and checked on human
text by ``benchmarks/bench_watermark.py`` (see ``docs/watermark.md``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

WINMAX_FPR = 1e-3
MIN_WINDOW = 16


def window_sizes(total: int, min_window: int = MIN_WINDOW) -> list[int]:
    """Window sizes searched for a text of ``total`` scored tokens: ×1.5 steps from ``min_window`` to ``total``."""
    sizes, w = [], float(min_window)
    while int(w) < total:
        sizes.append(int(w))
        w *= 1.5
    return sizes + [total] if total >= min_window else []


def window_z(green: np.ndarray, size: int, gamma: float) -> np.ndarray:
    """z-score of every window of ``size`` consecutive scored tokens.

    Args:
        green: ``bool``/``int`` array of shape ``(..., T)``: colour of each scored token.
        size: Window length in scored tokens (``<= T``).
        gamma: γ, green-list fraction.

    Returns:
        Array of shape ``(..., T - size + 1)``.
    """
    csum = np.concatenate([np.zeros(green.shape[:-1] + (1,)), np.cumsum(green, axis=-1)], axis=-1)
    hits = csum[..., size:] - csum[..., :-size]
    return (hits - gamma * size) / np.sqrt(size * gamma * (1 - gamma))


def winmax_z(green: np.ndarray, gamma: float, min_window: int = MIN_WINDOW) -> np.ndarray:
    """WinMax statistic: the largest window z-score over all sizes and positions.

    Args:
        green: Colours of the scored tokens, shape ``(..., T)``.
        gamma: γ.
        min_window: Smallest window searched.

    Returns:
        Array of shape ``(...)`` (``-inf`` when ``T < min_window``).
    """
    total = green.shape[-1]
    best = np.full(green.shape[:-1], -np.inf)
    for size in window_sizes(total, min_window):
        best = np.maximum(best, window_z(green, size, gamma).max(axis=-1))
    return best


@functools.cache
def _table() -> tuple[np.ndarray, np.ndarray]:
    data = json.loads(files("watermark").joinpath("winmax_thresholds.json").read_text())
    lengths = np.array([row["tokens"] for row in data["thresholds"]], dtype=float)
    values = np.array([row["z"] for row in data["thresholds"]], dtype=float)
    return lengths, values


def winmax_threshold(total: int) -> float:
    """WinMax threshold for ``total`` scored tokens at false-positive rate ``WINMAX_FPR`` (γ = 0.25 table).

    Interpolated in log T between calibrated lengths; clamped at the table's ends.
    """
    lengths, values = _table()
    return float(np.interp(np.log(max(total, 1)), np.log(lengths), values))


@dataclass(frozen=True)
class Span:
    """A run of scored tokens whose windows carry the watermark.

    Attributes:
        first, last: Indices (inclusive) of the scored tokens.
        z_score: z of the tokens in the span.
    """

    first: int
    last: int
    z_score: float


def _z(hits: np.ndarray, size: np.ndarray, gamma: float) -> np.ndarray:
    return (hits - gamma * size) / np.sqrt(np.maximum(size, 1) * gamma * (1 - gamma))


def watermarked_spans(
    green: np.ndarray, gamma: float, threshold: float, min_window: int = MIN_WINDOW, max_spans: int = 5
) -> list[Span]:
    """Locate watermarked runs: the best window, refined, then the best window not overlapping it, ...

    Each round takes the window of highest z among those not overlapping a
    span found already, stops when it is below ``threshold``, and refines the
    window's start and end (each within half its size) to maximise z, so the
    span hugs the watermarked tokens instead of the whole significant window.

    Args:
        green: Colours of the T scored tokens, shape ``(T,)``.
        gamma: γ.
        threshold: The WinMax threshold for this T.
        min_window: Smallest window searched.
        max_spans: Most spans returned.

    Returns:
        Spans in text order, each with the z-score of its own tokens.
    """
    total = green.shape[0]
    csum = np.concatenate([[0], np.cumsum(green)])
    taken = np.zeros(total, dtype=bool)
    spans: list[Span] = []
    for _ in range(max_spans):
        tsum = np.concatenate([[0], np.cumsum(taken)])
        best = (-np.inf, 0, 0)
        for size in window_sizes(total, min_window):
            z = window_z(green, size, gamma)
            z[(tsum[size:] - tsum[:-size]) > 0] = -np.inf
            i = int(np.argmax(z))
            if z[i] > best[0]:
                best = (float(z[i]), i, size)
        if best[0] < threshold:
            break
        _, start, size = best
        lo = int(np.flatnonzero(taken[:start])[-1]) + 1 if taken[:start].any() else 0
        after = np.flatnonzero(taken[start + size :])
        hi = start + size + int(after[0]) if after.size else total
        starts = np.arange(max(lo, start - size // 2), min(start + size // 2, hi - min_window) + 1)
        ends = np.arange(max(start + size - size // 2, lo + min_window), min(hi, start + size + size // 2) + 1)
        lengths = ends[None, :] - starts[:, None]
        z = _z(csum[ends][None, :] - csum[starts][:, None], lengths, gamma)
        z[lengths < min_window] = -np.inf
        a, b = np.unravel_index(int(np.argmax(z)), z.shape)
        first, end = int(starts[a]), int(ends[b])
        taken[first:end] = True
        spans.append(Span(first, end - 1, float(z[a, b])))
    return sorted(spans, key=lambda sp: sp.first)
