"""Greenlist's own contrastive suite: build it from ``examples/contrastive/`` and measure a guardrail on it.

``templates.tsv`` holds hand-written sentences with a ``{g}`` / ``{G}`` slot for an identity group, written as
contrast sets (the same statement negated, quoted in counter-speech, asserted, and a neutral or positive
mention; Vidgen et al., "Learning from the Worst", ACL 2021, section 3); each template is filled with
:data:`PER_TEMPLATE` groups from :data:`GROUPS`, picked by rotation. ``plain.tsv`` holds complete sentences
(reclaimed slurs, profanity without a target, insults at an individual, threats, violent words used
harmlessly). None of them is in any training file (checked by ``tests/guardrails/test_toxicity_contrastive.py``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "contrastive"
GROUPS = (
    "Muslims",
    "Jews",
    "immigrants",
    "gay people",
    "women",
    "Black people",
    "trans people",
    "refugees",
    "disabled people",
    "Mexicans",
    "Roma",
    "Christians",
)
PER_TEMPLATE = 3


def suite() -> list[dict[str, Any]]:
    """The expanded suite: dicts ``{"text", "label" (1 = should be blocked), "phenomenon"}``."""
    rows = []
    with open(FOLDER / "templates.tsv", newline="", encoding="utf-8") as f:
        for k, r in enumerate(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)):
            for j in range(PER_TEMPLATE):
                g = GROUPS[(k * PER_TEMPLATE + j) % len(GROUPS)]
                text = r["template"].replace("{G}", g[0].upper() + g[1:]).replace("{g}", g)
                rows.append({"text": text, "label": int(r["label"]), "phenomenon": r["phenomenon"]})
    with open(FOLDER / "plain.tsv", newline="", encoding="utf-8") as f:
        rows += [
            {"text": r["text"], "label": int(r["label"]), "phenomenon": r["phenomenon"]}
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    return rows


def evaluate_contrastive(guard: Any, thresholds: dict[str, float]) -> dict[str, Any]:
    """Accuracy of "blocked" (an OpenAI category at or over its threshold) against the suite's labels.

    Args:
        guard: A :class:`guardrails.toxicity.ToxicityGuardrail` (its ``score`` method is used).
        thresholds: ``{category: threshold}`` (e.g. the balanced preset).

    Returns:
        ``{"accuracy", "n", "per_phenomenon": {name: {"accuracy", "n"}}, "errors": [first 40 wrong texts]}``.
    """
    from guardrails.toxicity.training.evaluate import blocked

    rows = suite()
    pred = [blocked(guard.score(r["text"])[0].scores, thresholds) for r in rows]
    ok = np.asarray([int(p) == r["label"] for p, r in zip(pred, rows, strict=True)])
    per: dict[str, list[bool]] = {}
    for r, o in zip(rows, ok, strict=True):
        per.setdefault(r["phenomenon"], []).append(bool(o))
    return {
        "accuracy": round(float(ok.mean()), 3),
        "n": len(rows),
        "per_phenomenon": {p: {"accuracy": round(float(np.mean(v)), 3), "n": len(v)} for p, v in per.items()},
        "errors": [r["text"] for r, o in zip(rows, ok, strict=True) if not o][:40],
    }


__all__ = ["suite", "evaluate_contrastive", "GROUPS"]
