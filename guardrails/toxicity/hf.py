"""Any Hugging Face text-classification model as a toxicity backend (``model: <hub id or local directory>``).

Loaded through ``transformers.pipeline(..., top_k=None)``; its labels are mapped to Greenlist / OpenAI
categories by :func:`map_label`. Same interface as :class:`guardrails.toxicity.backends.MiniLMHead`:
``categories``, ``default_thresholds`` and a thread-safe ``classify(texts)``.
"""

from __future__ import annotations

import threading
from typing import Any

from guardrails.toxicity.text import prepare

# Lower-cased model label -> Greenlist / OpenAI category. Labels in _NEGATIVE
# mean "not toxic"; a label not listed keeps its own (lower-cased) name.
LABEL_MAP: dict[str, str] = {
    "toxic": "toxicity",
    "toxicity": "toxicity",
    "offensive": "toxicity",
    "off": "toxicity",
    "abusive": "toxicity",
    "label_1": "toxicity",
    "hateful": "hate",
    "hate": "hate",
    "hate_speech": "hate",
    "identity_hate": "hate",
    "identity_attack": "hate",
    "insult": "harassment",
    "harassment": "harassment",
    "obscene": "profanity",
    "profanity": "profanity",
    "threat": "violence",
    "sexual_explicit": "sexual",
    "severe_toxic": "severe_toxicity",
    "severe_toxicity": "severe_toxicity",
}
_NEGATIVE = {
    "label_0",
    "non-toxic",
    "non_toxic",
    "nontoxic",
    "not",
    "neutral",
    "normal",
    "nothate",
    "not_hate",
    "neither",
    "non-offensive",
    "not_offensive",
    "none",
    "safe",
}


def map_label(label: str, overrides: dict[str, str] | None = None) -> str | None:
    """Map a model's output label to a category name, or ``None`` for a "not toxic" label.

    Args:
        label: The label string from the model config (``id2label``).
        overrides: Extra ``{model label: category}`` entries (case-insensitive);
            map a label to ``""`` to treat it as "not toxic".
    """
    key = label.strip().lower()
    for k, v in (overrides or {}).items():
        if k.lower() == key:
            return v or None
    if key in _NEGATIVE:
        return None
    return LABEL_MAP.get(key, key)


class HFClassifier:
    """A Hugging Face text-classification model as a toxicity backend.

    ``toxicity`` is the model's toxic label when it has one, else one minus
    its "not toxic" label, else the maximum over its other categories.

    Args:
        model: Hub id (needs network or a warm cache) or local directory.
        label_map: Optional ``{model label: category}`` overrides.

    Raises:
        OSError / ValueError: from ``transformers`` when the model cannot load.
    """

    def __init__(self, model: str, label_map: dict[str, str] | None = None) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=model, tokenizer=model, top_k=None, device=-1)
        self.label_map = dict(label_map or {})
        labels = list(self.pipe.model.config.id2label.values())
        cats = {map_label(lab, self.label_map) for lab in labels} - {None}
        self.categories: tuple[str, ...] = ("toxicity",) + tuple(sorted(cats - {"toxicity"}))
        self.default_thresholds = {c: 0.5 for c in self.categories}
        self._lock = threading.Lock()

    def _to_categories(self, preds: list[dict[str, Any]]) -> dict[str, float]:
        scores: dict[str, float] = {}
        negative = None
        for p in preds:
            cat = map_label(p["label"], self.label_map)
            if cat is None:
                negative = max(negative or 0.0, float(p["score"]))
            else:
                scores[cat] = max(scores.get(cat, 0.0), float(p["score"]))
        if "toxicity" not in scores:
            if negative is not None:
                scores["toxicity"] = 1.0 - negative
            else:
                scores["toxicity"] = max(scores.values(), default=0.0)
        return {c: scores.get(c, 0.0) for c in self.categories}

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Category probabilities (N dicts) for N raw texts, prepared like the default."""
        prepared = [prepare(t) for t in texts]
        idx = [i for i, t in enumerate(prepared) if t]
        out = [{c: 0.0 for c in self.categories} for _ in texts]
        if idx:
            with self._lock:
                preds = self.pipe([prepared[i] for i in idx], truncation=True, batch_size=32)
            for i, p in zip(idx, preds, strict=True):
                out[i] = self._to_categories(p)
        return out
