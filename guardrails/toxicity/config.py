"""Policy entry of the toxicity guardrail and its strictness presets.

A preset is a set of per-category thresholds calibrated on benign dev text to a false-positive budget
(:mod:`guardrails.toxicity.training.presets` writes ``weights/presets.json``; measured recall and FPR per
preset are in ``docs/toxicity.md``):

=============  ==================================================
``strict``     FPR budget 2 % per category on benign dev text
``balanced``   0.5 %
``permissive`` 0.1 %
=============  ==================================================

Categories follow OpenAI's moderation categories: ``hate`` (attacks on people for a protected
characteristic), ``harassment`` (insults or threats at an individual), ``violence`` (threats, incitement),
``sexual``, ``self-harm``; plus Greenlist's ``profanity`` (swearing, its own score) and ``toxicity`` (the
overall offensive-language score of the English heads).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from guardrails.base import GuardrailConfig

RETIRED_MODELS = {
    "v9": "model v9 (the default until 2026-12-07) left the repository with v12 (its fine-tuned layers did not fit "
    "the weight budget beside v12's): rebuild it with `python -m guardrails.toxicity.training.train --recipe v9 "
    "--out DIR` and set `model: DIR/minilm_head.npz`, or use `model: v8` or `default`",
}
"""Model names that once shipped and whose weights are gone: ``{name: how to get them back}``."""

DEFAULT_THRESHOLD = 0.5
OPENAI_CATEGORIES = ("hate", "harassment", "violence", "sexual", "self-harm")
KNOWN_CATEGORIES = (*OPENAI_CATEGORIES, "profanity", "toxicity")
STRICTNESS = ("strict", "balanced", "permissive")
FPR_BUDGETS = {"strict": 0.02, "balanced": 0.005, "permissive": 0.001}
PRESETS_FILE = Path(__file__).resolve().parent / "weights" / "presets.json"
Action = Literal["block", "redact", "flag", "allow"]


@cache
def _presets_file() -> dict[str, Any]:
    return json.loads(PRESETS_FILE.read_text("utf-8")) if PRESETS_FILE.exists() else {}


def preset_thresholds(model: str, strictness: str) -> dict[str, float]:
    """Per-category thresholds of ``strictness`` for ``model`` (``{}`` when that model has no calibration).

    Args:
        model: A model name as in the policy (``default``, ``multilingual``, ...).
        strictness: ``strict``, ``balanced`` or ``permissive``.

    Raises:
        ValueError: for another strictness.
    """
    if strictness not in STRICTNESS:
        raise ValueError(f"strictness must be one of {', '.join(STRICTNESS)}, got {strictness!r}")
    entry = _presets_file().get(model, {}).get(strictness, {})
    return {c: float(v) for c, v in entry.get("thresholds", {}).items()}


class ToxicityConfig(GuardrailConfig):
    """Policy entry of the toxicity guardrail.

    Attributes:
        type: Always ``"toxicity"``.
        strictness: ``strict`` | ``balanced`` | ``permissive``: per-category thresholds calibrated to a
            false-positive budget on benign text (module docstring). With a preset the guardrail fires on
            the OpenAI categories (``block_categories``) with ``action``, on ``profanity`` with its
            ``category_actions`` entry (default ``flag``), and on the overall ``toxicity`` score only when
            ``threshold`` is set explicitly. ``None`` (no preset): ``threshold`` on ``toxicity`` plus the
            categories listed in ``categories`` / ``category_actions``, each at the model's default threshold.
        threshold: Overall toxicity probability at or above which the guardrail fires (see ``strictness``);
            ``null`` = the overall score never fires (only the categories do).
        action: ``block``, ``redact`` (replaces only the offending sentences), ``flag`` or ``allow``.
        model: ``"default"`` (packaged MiniLM + heads), ``v1``-``v3``, ``multilingual``, ``multilingual-v2``,
            ``multilingual-e5`` (fine-tuned e5-small), ``multilingual-e5-heads``, a ``.npz`` path, or a
            Hugging Face text-classification model id / local path.
        categories: ``{category: threshold}``; overrides the preset's value, and makes that category fire.
        block_categories: Categories a preset fires on with ``action`` (default: the OpenAI ones).
        label_map: ``{model label: category}`` overrides for Hugging Face models.
        profanity_check_weight: MiniLM-head models only: weight of alt-profanity-check in ``toxicity``.
        category_actions: ``{category: action}``; a category that reaches its threshold applies its own action
            (the most severe one wins).
        languages: ``{ISO 639-1 code: model}`` routing (any value ``model`` accepts).
        supported_languages: Languages ``model`` covers; ``und`` (short / unclear) counts as supported.
        on_unsupported_language: ``flag`` | ``block`` | ``allow`` for a language no model covers.
        language_min_confidence: Below this detector probability a mostly Latin-script text is ``und``.
        detect_language: ``False`` skips detection (every text is ``und``).
        precision: MiniLM encoder precision: ``auto`` (the one the model's heads were fit on), ``float32`` or
            ``int8`` (ONNX Runtime) or ``bfloat16`` (PyTorch).
        context_sentences: Largest context window in sentences for long texts (1 = single sentences only;
            ``guardrails.toxicity.sentences.scoring_units``).
        cache_size: Unit scores kept in the guardrail's LRU cache (0 = none).
    """

    type: Literal["toxicity"] = "toxicity"
    strictness: Literal["strict", "balanced", "permissive"] | None = None
    threshold: float | None = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    model: str = "default"
    categories: dict[str, float] = Field(default_factory=dict)
    block_categories: list[str] = Field(default_factory=lambda: list(OPENAI_CATEGORIES))
    label_map: dict[str, str] = Field(default_factory=dict)
    profanity_check_weight: float | None = Field(None, ge=0.0, le=1.0)
    category_actions: dict[str, Action] = Field(default_factory=dict)
    languages: dict[str, str] = Field(default_factory=dict)
    supported_languages: list[str] = Field(default_factory=lambda: ["en"])
    on_unsupported_language: Literal["flag", "block", "allow"] = "flag"
    language_min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    detect_language: bool = True
    precision: Literal["auto", "float32", "int8", "bfloat16"] = "auto"
    context_sentences: int = Field(3, ge=1, le=3)
    cache_size: int = Field(8192, ge=0)

    @field_validator("strictness", mode="before")
    @classmethod
    def _strictness(cls, v: Any) -> Any:
        if v is not None and v not in STRICTNESS:
            raise ValueError(
                f"strictness must be one of {', '.join(STRICTNESS)} (per-category thresholds at "
                f"a false-positive budget of 2 %, 0.5 %, 0.1 % on benign text), got {v!r}"
            )
        return v

    @field_validator("model")
    @classmethod
    def _not_retired(cls, v: str) -> str:
        from guardrails.toxicity.backends import NAMED_WEIGHTS  # a rebuilt copy may be registered under the name

        if v in RETIRED_MODELS and v not in NAMED_WEIGHTS:
            raise ValueError(RETIRED_MODELS[v])
        return v

    @field_validator("categories")
    @classmethod
    def _category_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {c: t for c, t in v.items() if not 0.0 <= float(t) <= 1.0}
        if bad:
            raise ValueError(f"category thresholds must be in [0, 1], got {bad}")
        return v

    @model_validator(mode="after")
    def _preset_known(self) -> ToxicityConfig:
        unknown = [c for c in self.block_categories if c not in KNOWN_CATEGORIES]
        if unknown and self.model in ("default", "multilingual"):
            raise ValueError(
                f"block_categories: unknown {unknown}; the packaged models know {', '.join(KNOWN_CATEGORIES)}"
            )
        return self

    @property
    def toxicity_fires(self) -> bool:
        """Whether the overall ``toxicity`` score makes the guardrail fire: a threshold that is not ``null``, and
        either no preset or a threshold set explicitly."""
        return self.threshold is not None and (self.strictness is None or "threshold" in self.model_fields_set)


__all__ = [
    "ToxicityConfig",
    "preset_thresholds",
    "OPENAI_CATEGORIES",
    "KNOWN_CATEGORIES",
    "STRICTNESS",
    "FPR_BUDGETS",
    "DEFAULT_THRESHOLD",
]
