"""Toxicity guardrail: scores a text for toxicity, hate, harassment and profanity.

Default model: all-MiniLM-L6-v2 sentence embeddings (shared encoder, packaged
offline) and one logistic head per category, trained on Davidson, OLID and
Jigsaw identity templates by :mod:`guardrails.toxicity.train`; see
``docs/toxicity.md`` for data, cross-validated numbers and limits. Any other
``model`` value loads a Hugging Face text-classification model instead.

Importing this module is cheap (pydantic only); models load when a
:class:`ToxicityGuardrail` is constructed and are shared per process.

Policy entry::

    - type: toxicity
      threshold: 0.5          # on the overall toxicity probability
      action: block
      categories: {hate: 0.4} # optional per-category thresholds (also fire)
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Literal

from pydantic import Field

from guardrails.base import (
    Direction,
    Guardrail,
    GuardrailConfig,
    GuardrailResult,
    action_decision,
)

DEFAULT_THRESHOLD = 0.5
# OpenAI moderation keys this guardrail models; "toxicity" and "profanity" are
# Greenlist extensions returned alongside them in ``moderate``.
OPENAI_CATEGORIES = ("hate", "harassment")
_load_lock = threading.Lock()


@functools.cache
def _backend_uncached(model: str, label_map: tuple[tuple[str, str], ...],
                      pc_weight: float | None) -> Any:
    from guardrails.toxicity.backends import HFClassifier, MiniLMHead

    if model == "default":
        return MiniLMHead(pc_weight=pc_weight)
    return HFClassifier(model, dict(label_map))


def load_backend(model: str = "default", label_map: dict[str, str] | None = None,
                 profanity_check_weight: float | None = None) -> Any:
    """Return the process-wide classifier for ``model`` (loaded on first call).

    Args:
        model: ``"default"`` for the packaged MiniLM + head, else a Hugging
            Face text-classification model id or local directory.
        label_map: ``{model label: category}`` overrides for Hugging Face models.
        profanity_check_weight: Default model only: weight of
            alt-profanity-check in the toxicity score (``None`` = packaged 0.3).

    Returns:
        A backend with ``categories``, ``default_thresholds`` and ``classify``.
    """
    with _load_lock:
        return _backend_uncached(model, tuple(sorted((label_map or {}).items())),
                                 profanity_check_weight if model == "default" else None)


class ToxicityConfig(GuardrailConfig):
    """Policy entry of the toxicity guardrail.

    Attributes:
        type: Always ``"toxicity"``.
        threshold: Fires when the overall toxicity probability is at or above
            it. Default 0.5: the heads are class-balanced, and 0.5 is within
            0.05 of the F1-optimal cross-validated threshold on OLID + Jigsaw
            (``docs/toxicity.md``).
        action: ``block``, ``redact``, ``flag`` or ``allow``.
        model: ``"default"`` (packaged MiniLM + logistic heads) or a Hugging
            Face text-classification model id / local path.
        categories: Optional ``{category: threshold}``. A listed category also
            makes the guardrail fire when its score reaches its threshold;
            unlisted categories use the model's default thresholds for
            ``flagged_categories`` only.
        label_map: ``{model label: category}`` overrides for Hugging Face models.
        profanity_check_weight: Default model only: toxicity =
            ``(1 - w) * MiniLM head + w * alt-profanity-check``; ``None`` uses
            the packaged 0.3, ``0`` gives the MiniLM head alone (less
            identity-word bias on terms like "queer", lower tweet AUROC).
    """

    type: Literal["toxicity"] = "toxicity"
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    model: str = "default"
    categories: dict[str, float] = Field(default_factory=dict)
    label_map: dict[str, str] = Field(default_factory=dict)
    profanity_check_weight: float | None = Field(None, ge=0.0, le=1.0)


class ToxicityGuardrail(Guardrail):
    """Scores texts for toxicity (and hate / harassment / profanity) and fires on a threshold.

    Args:
        config: A :class:`ToxicityConfig`.

    Raises:
        FileNotFoundError: default weights missing; ``OSError``/``ValueError``
            from transformers when a Hugging Face model cannot be loaded.
    """

    Config = ToxicityConfig
    streaming = True

    def __init__(self, config: ToxicityConfig) -> None:
        super().__init__(config)
        self.backend = load_backend(config.model, config.label_map, config.profanity_check_weight)
        self.thresholds: dict[str, float] = dict(self.backend.default_thresholds)
        self.thresholds.update(config.categories)
        self.thresholds["toxicity"] = config.threshold

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Category probabilities for a batch.

        Args:
            texts: N texts (normalised internally: NFKC, zero-width removal,
                homoglyph folding).

        Returns:
            N dicts ``{category: probability in [0, 1]}``, always with
            ``"toxicity"``; the default model also gives ``hate``,
            ``harassment`` and ``profanity``.
        """
        return self.backend.classify(list(texts))

    def _flagged(self, scores: dict[str, float]) -> list[str]:
        return [c for c, s in scores.items() if s >= self.thresholds.get(c, 0.5)]

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Score one text.

        Returns:
            A result with ``score`` = overall toxicity probability and
            ``details = {"categories": {name: score}, "flagged_categories": [...]}``.
            It fires when toxicity >= ``threshold`` or a category listed in
            ``config.categories`` reaches its threshold.
        """
        scores = self.classify([text])[0]
        flagged = self._flagged(scores)
        details = {"categories": {c: round(s, 6) for c, s in scores.items()},
                   "flagged_categories": flagged}
        result = self.fired(scores["toxicity"], details)
        extra = [c for c in flagged if c in self.config.categories and c != "toxicity"]
        if result.action is None and extra:
            result.action = self.config.action
            result.decision = action_decision(self.config.action)
        return result

    def moderate(self, texts: list[str]) -> list[dict[str, Any]]:
        """OpenAI-moderation-shaped results for a batch.

        Args:
            texts: N texts.

        Returns:
            N dicts ``{"flagged": bool, "categories": {cat: bool},
            "category_scores": {cat: float}}``. Keys: the OpenAI categories
            ``hate`` and ``harassment`` plus Greenlist's ``toxicity`` and
            ``profanity`` (default model); a Hugging Face model gives its
            mapped labels. Other OpenAI categories (``self-harm``, ``sexual``,
            ``violence``, ``illicit``, the ``/threatening`` variants) are not
            modelled and are omitted. ``flagged`` is true when any category is.
        """
        out = []
        for scores in self.classify(texts):
            flags = {c: s >= self.thresholds.get(c, 0.5) for c, s in scores.items()}
            out.append({"flagged": any(flags.values()), "categories": flags,
                        "category_scores": dict(scores)})
        return out


__all__ = ["ToxicityConfig", "ToxicityGuardrail", "load_backend", "OPENAI_CATEGORIES"]
