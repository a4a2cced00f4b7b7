"""Classification metrics of the toxicity evaluation (:mod:`guardrails.toxicity.training.evaluate`): macro-F1
(the mean of the positive and the negative class's F1; Sokolova & Lapalme 2009), and macro-F1 on a language's
test rows at the threshold tuned on its dev rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from guardrails.toxicity.training.calibration import BLOCKING
from guardrails.toxicity.training.splits import Row


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    tp, fp, fn = int(((p == 1) & (y == 1)).sum()), int(((p == 1) & (y == 0)).sum()), int(((p == 0) & (y == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of the positive and the negative class's F1 (Sokolova & Lapalme 2009)."""
    return (_f1(y, p) + _f1(1 - y, 1 - p)) / 2


def dev_tuned_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The threshold, among the 1st-99th percentiles of ``scores``, with the best macro-F1 on labels ``y``.

    Args:
        y: (N,) 0/1 labels of the dev rows.
        scores: (N,) their scores; a row is predicted positive at ``score >= threshold``.
    """
    grid = np.unique(np.quantile(scores, np.linspace(0.01, 0.99, 99)))
    return float(max(grid, key=lambda t: macro_f1(y, (scores >= t).astype(int))))


def split_indices(rows: list[Row], lang: str, split: str, scores: list[dict[str, Any]] | None = None) -> list[int]:
    """Indices of ``lang``'s labelled rows of ``split`` (the benign-prose set ``british_novels`` left out, and with
    ``scores``, the rows the evaluation marked ``not_scored``)."""
    return [
        i
        for i, r in enumerate(rows)
        if r.language == lang
        and r.split == split
        and r.dataset != "british_novels"
        and (scores is None or scores[i].get("_model") != "not_scored")
    ]


def tuned_macro_f1(rows: list[Row], scores: list[dict[str, Any]], lang: str) -> dict[str, Any] | None:
    """Macro-F1 on ``lang``'s test rows at the blocking threshold that maximises it on its dev rows.

    The score of a text is its highest OpenAI-category score; this measures how well the model separates the
    classes of that data set, apart from the prose-calibrated presets.
    """

    def split(name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = split_indices(rows, lang, name, scores)
        return (
            np.asarray([rows[i].label for i in idx]),
            np.asarray([max(scores[i].get(c, 0.0) for c in BLOCKING) for i in idx]),
        )

    (yd, sd), (yt, st) = split("dev"), split("test")
    if len(yd) < 20 or len(yt) < 20 or yd.min() == yd.max():
        return None
    best = dev_tuned_threshold(yd, sd)
    return {
        "macro_f1": round(macro_f1(yt, (st >= best).astype(int)), 3),
        "threshold": round(float(best), 4),
        "n": len(yt),
    }
