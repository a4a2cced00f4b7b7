"""Negative flip rate of a new toxicity model against an old one on the dev splits (change control).

A negative flip is a dev row the old model decided correctly (blocked iff toxic, each model at its own
``balanced`` preset) and the new model decides wrongly (Yan et al., "Positive-Congruent Training", CVPR 2021,
section 3). Uses the scores cached by :mod:`guardrails.toxicity.training.evaluate` (run it first).

    python -m guardrails.toxicity.training.flips v5 v7
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from guardrails.toxicity.config import preset_thresholds
from guardrails.toxicity.training.evaluate import blocked
from guardrails.toxicity.training.splits import evaluation_rows


def flips(old: str, new: str, per_group: int = 300, prose: int = 800) -> dict[str, Any]:
    """``{"n", "negative_flip_rate", "positive_flip_rate", "old_accuracy", "new_accuracy", "by_dataset", "examples"}``
    over English dev rows and dev-book prose, from the cached scores of both models (``by_dataset``:
    ``{data set: {"n", "negative", "positive"}}`` flip counts).

    Raises:
        FileNotFoundError: when a model's evaluation cache is missing.
    """
    from greenlist.home import cache_dir

    stores = {m: json.loads((cache_dir("toxicity") / f"eval_{m}.json").read_text()) for m in (old, new)}
    th = {m: preset_thresholds(m, "balanced") for m in (old, new)}
    rows = [r for r in evaluation_rows(per_group, prose) if r.split == "dev" and r.language == "en"]
    neg, pos, ok_old, ok_new, examples = 0, 0, 0, 0, []
    by_dataset: dict[str, dict[str, int]] = {}
    for r in rows:
        key = hashlib.sha1(r.text.encode()).hexdigest()
        a = blocked(stores[old][key], th[old]) == bool(r.label)
        b = blocked(stores[new][key], th[new]) == bool(r.label)
        ok_old += a
        ok_new += b
        counts = by_dataset.setdefault(r.dataset, {"n": 0, "negative": 0, "positive": 0})
        counts["n"] += 1
        counts["negative"] += a and not b
        counts["positive"] += b and not a
        if a and not b:
            neg += 1
            if len(examples) < 8:
                examples.append({"label": r.label, "dataset": r.dataset, "text": r.text[:120]})
        pos += b and not a
    n = len(rows)
    return {
        "old": old,
        "new": new,
        "n": n,
        "negative_flip_rate": round(neg / n, 4),
        "positive_flip_rate": round(pos / n, 4),
        "old_accuracy": round(ok_old / n, 4),
        "new_accuracy": round(ok_new / n, 4),
        "by_dataset": by_dataset,
        "examples": examples,
    }


if __name__ == "__main__":
    print(json.dumps(flips(*sys.argv[1:3]), indent=1))
