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


def watermarked_spans(green: np.ndarray, gamma: float, threshold: float,
                      min_window: int = MIN_WINDOW) -> list[Span]:
    """Merge every window whose z-score reaches ``threshold`` into disjoint spans.

    Args:
        green: Colours of the T scored tokens, shape ``(T,)``.
        gamma: γ.
        threshold: The WinMax threshold for this T.
        min_window: Smallest window searched.

    Returns:
        Spans in text order, each with the z-score of its own tokens.
    """
    total = green.shape[0]
    covered = np.zeros(total + 1, dtype=int)
    for size in window_sizes(total, min_window):
        starts = np.flatnonzero(window_z(green, size, gamma) >= threshold)
        np.add.at(covered, starts, 1)
        np.add.at(covered, starts + size, -1)
    inside = np.cumsum(covered[:-1]) > 0
    spans: list[Span] = []
    idx = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(int), [0]])))
    for first, end in zip(idx[::2], idx[1::2]):
        n = end - first
        hits = int(green[first:end].sum())
        spans.append(Span(int(first), int(end - 1), float((hits - gamma * n) / np.sqrt(n * gamma * (1 - gamma)))))
    return spans
