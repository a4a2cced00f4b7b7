"""Calibration of the strictness presets on benign dev prose (paragraphs and answer-length texts).

Used by :mod:`guardrails.toxicity.training.evaluate` (``--calibrate``); the presets are written to
``weights/presets.json`` and read by :func:`guardrails.toxicity.config.preset_thresholds`. The rule and its
measured trade-offs are in ``docs/toxicity.md`` ("Strictness presets").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from guardrails.toxicity.config import FPR_BUDGETS
from guardrails.toxicity.training.splits import Row

BLOCKING = ("hate", "harassment", "violence", "sexual")
"""The categories the default policy blocks on (``self-harm`` has no head)."""

ANSWER_CATEGORIES = ("hate", "harassment", "sexual")
"""Calibrated on answer-length benign prose (:func:`guardrails.toxicity.training.splits.answer_chunks`); violence
and profanity on paragraphs (see :func:`calibrate`)."""


def _descending(scores: list[dict[str, float]], c: str) -> np.ndarray:
    """The ``c`` scores of ``scores`` (0 where absent), highest first."""
    return np.sort(np.asarray([s.get(c, 0.0) for s in scores], dtype=np.float64))[::-1]


def _rank_threshold(desc: np.ndarray, k: int) -> float:
    """The smallest threshold that at most ``k`` of the scores ``desc`` (highest first) reach."""
    return round(float(min(1.0, desc[k] + 1e-5)), 5) if k < len(desc) else 0.0


def calibrate(
    rows: list[Row], scores: list[dict[str, float]], chunks: list[Row], chunk_scores: list[dict[str, float]]
) -> dict[str, Any]:
    """Preset thresholds per category from benign prose of the dev books (British novels, dev split).

    A false block hurts per answer, and an answer of several paragraphs reaches a category's threshold more often
    than one paragraph does (its score is the maximum over more units). So ``hate``, ``harassment`` and
    ``sexual`` (:data:`ANSWER_CATEGORIES`) are calibrated on the dev books' answer-length chunks
    (:func:`~guardrails.toxicity.training.splits.answer_chunks`, 150+ words): one common rank, the largest at which
    at most three quarters of the preset's budget of the chunks reach any of the three. ``violence`` keeps a
    quarter of the budget on dev *paragraphs* (on chunks its threshold cost most threats: contrastive threat
    accuracy 0.70 -> 0.45 for v9, docs/toxicity.md), and ``profanity`` (it only flags) the whole budget on
    paragraphs. A category the model does not score is left out (it never fires).

    Args:
        rows: Evaluation rows; their ``british_novels`` dev rows are the paragraphs.
        scores: One score dict per row.
        chunks: Answer-length rows; their ``british_novels_chunks`` dev rows are used.
        chunk_scores: One score dict per chunk.

    Returns:
        ``{preset: {"fpr_budget", "thresholds": {category: t}, "benign_dev_rows": n, "benign_dev_chunks": m}}``.
    """
    para = [scores[i] for i, r in enumerate(rows) if r.split == "dev" and r.dataset == "british_novels"]
    dev = [chunk_scores[i] for i, r in enumerate(chunks) if r.split == "dev" and r.dataset == "british_novels_chunks"]
    answer = [c for c in ANSWER_CATEGORIES if any(c in s for s in dev)]
    para_desc = {c: _descending(para, c) for c in ("violence", "profanity")}
    dev_desc = {c: _descending(dev, c) for c in answer}
    out = {}
    for preset, budget in FPR_BUDGETS.items():
        th: dict[str, float] = {}
        for c in ("violence", "profanity"):
            if any(c in s for s in para):
                share = budget if c == "profanity" else budget / len(BLOCKING)
                th[c] = _rank_threshold(para_desc[c], int(np.floor(share * len(para))))
        allowed = int(np.floor(budget * len(answer) / len(BLOCKING) * len(dev)))
        for k in range(len(dev)):
            trial = {c: _rank_threshold(dev_desc[c], k) for c in answer}
            if sum(any(s.get(c, 0.0) >= t for c, t in trial.items()) for s in dev) > allowed:
                break
            th.update(trial)
        out[preset] = {
            "fpr_budget": budget,
            "thresholds": th,
            "benign_dev_rows": len(para),
            "benign_dev_chunks": len(dev),
        }
    return out


def chunk_rows(n: int) -> list[Row]:
    """Answer-length benign texts (:func:`~guardrails.toxicity.training.splits.answer_chunks`): every chunk of the
    British-novel dev books (preset calibration), at most ``n`` of the test books and of ``ag_news_long``
    (measure only)."""
    from guardrails.toxicity.training.splits import answer_chunks, load_extra, load_novels

    novels = load_novels()
    dev = answer_chunks([r for r in novels if r.split == "dev"])
    test = answer_chunks([r for r in novels if r.split == "test"])[:n]
    news = answer_chunks(load_extra(("ag_news_long",)))[:n]
    return dev + test + news


__all__ = ["BLOCKING", "ANSWER_CATEGORIES", "calibrate", "chunk_rows"]
