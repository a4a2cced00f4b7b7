"""Strictness-preset calibration: each preset stays within its false-positive budget on the dev prose it is fit on."""

from __future__ import annotations

import numpy as np

from guardrails.toxicity.config import FPR_BUDGETS
from guardrails.toxicity.training.calibration import ANSWER_CATEGORIES, BLOCKING, calibrate
from guardrails.toxicity.training.splits import Row

CATS = (*BLOCKING, "profanity")


def _benign(n: int, dataset: str, rng: np.random.Generator) -> tuple[list[Row], list[dict[str, float]]]:
    rows = [Row(f"{dataset} {i}", "en", 0, "none", dataset, "dev") for i in range(n)]
    return rows, [{c: float(v) for c, v in zip(CATS, rng.beta(1, 6, len(CATS)), strict=True)} for _ in range(n)]


def test_presets_stay_within_budget_on_dev_prose() -> None:
    rng = np.random.default_rng(3)
    paras, para_scores = _benign(1200, "british_novels", rng)
    chunks, chunk_scores = _benign(900, "british_novels_chunks", rng)
    # rows of other splits or sets must not move the thresholds
    paras.append(Row("test paragraph", "en", 0, "none", "british_novels", "test"))
    para_scores.append(dict.fromkeys(CATS, 0.999))
    presets = calibrate(paras, para_scores, chunks, chunk_scores)
    assert list(presets) == list(FPR_BUDGETS)
    for name, p in presets.items():
        th, budget = p["thresholds"], FPR_BUDGETS[name]
        assert set(th) == set(CATS), name
        answer_blocked = sum(any(s[c] >= th[c] for c in ANSWER_CATEGORIES) for s in chunk_scores)
        assert answer_blocked <= budget * 3 / 4 * len(chunks), (name, answer_blocked)
        dev = para_scores[:-1]
        assert sum(s["violence"] >= th["violence"] for s in dev) <= budget / 4 * len(dev), name
        assert sum(s["profanity"] >= th["profanity"] for s in dev) <= budget * len(dev), name
        assert all(th[c] < 0.999 for c in CATS), (name, th)  # the test row was ignored
    strict, balanced, permissive = (presets[k]["thresholds"] for k in ("strict", "balanced", "permissive"))
    assert all(strict[c] <= balanced[c] <= permissive[c] for c in CATS)
    assert strict["hate"] < balanced["hate"]  # 900 texts resolve 2 % and 0.5 %
