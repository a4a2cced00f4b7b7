"""Toxicity guardrail: scores a text for toxicity, hate, harassment, violence, sexual content and profanity.

Default model (recipe v5): layers 3 and 2 of all-MiniLM-L6-v2 (packaged
offline; only the first 3 of its 6 layers run) with negation / reporting cues
(:mod:`guardrails.toxicity.features`) and one logistic head per category
(toxicity, hate, harassment, violence, sexual, profanity), trained on Davidson,
OLID, Jigsaw identity templates and Greenlist's own functional examples by
:mod:`guardrails.toxicity.training.train`; see ``docs/toxicity.md`` for data, measured
numbers and limits. ``model: v1`` / ``v2`` / ``v3`` are the earlier defaults,
``model: multilingual`` the USE-multilingual heads; a path to a ``.npz`` loads
those heads (or tuned layers); any other value loads a Hugging Face
text-classification model.

Each text's language is detected (:mod:`guardrails.toxicity.language`) and
recorded; a policy can route languages to other models and decide what
happens to languages no configured model covers.

Importing this module is cheap (pydantic only); models load when a
:class:`ToxicityGuardrail` is constructed and are shared per process.

Policy entry::

    - type: toxicity
      threshold: 0.5          # on the overall toxicity probability
      action: block
      categories: {hate: 0.4} # optional per-category thresholds (also fire)
      category_actions: {violence: block, profanity: flag}
      languages: {de: "some/xlm-r-toxicity-model"}   # per-language routing
      on_unsupported_language: flag   # flag | block | allow
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
OPENAI_CATEGORIES = ("hate", "harassment", "violence", "sexual")
Action = Literal["block", "redact", "flag", "allow"]
_load_lock = threading.Lock()


@functools.cache
def _backend_uncached(model: str, label_map: tuple[tuple[str, str], ...],
                      pc_weight: float | None, precision: str) -> Any:
    from pathlib import Path

    from guardrails.toxicity.backends import NAMED_WEIGHTS, HFClassifier, MiniLMHead

    if model == "default":
        return MiniLMHead(pc_weight=pc_weight, precision=precision)
    if model == "multilingual":  # USE multilingual v3 + heads, optional package (docs/benchmarks.md)
        from guardrails.toxicity.multilingual import MultilingualHead

        return MultilingualHead()
    if model in NAMED_WEIGHTS:
        return MiniLMHead(NAMED_WEIGHTS[model], pc_weight=pc_weight, precision=precision)
    if model.endswith(".npz") and Path(model).is_file():
        import numpy as np

        if any(k.startswith("layer.") for k in np.load(model).files):
            from guardrails.toxicity.model import TunedMiniLM

            return _Windowed(TunedMiniLM(Path(model), quantize=False))
        return MiniLMHead(Path(model), pc_weight=pc_weight, precision=precision)
    return HFClassifier(model, dict(label_map))


class _Windowed:
    """Adapter giving a :class:`~guardrails.toxicity.model.TunedMiniLM` the backend interface."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.categories = model.categories
        self.default_thresholds = model.default_thresholds

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Category probabilities (N dicts) for N raw texts, windowed like :class:`MiniLMHead`."""
        from guardrails.toxicity.backends import _max_by_owner, _split

        pieces, owner = _split(texts)
        import numpy as np

        P = self.model.predict(pieces) if pieces else np.zeros((0, len(self.categories)))
        out = _max_by_owner(P, owner, len(texts))
        return [{c: float(v) for c, v in zip(self.categories, row)} for row in out]


def load_backend(model: str = "default", label_map: dict[str, str] | None = None,
                 profanity_check_weight: float | None = None, precision: str = "auto") -> Any:
    """Return the process-wide classifier for ``model`` (loaded on first call).

    Args:
        model: ``"default"`` for the packaged MiniLM + heads, ``"v1"`` /
            ``"v2"`` / ``"v3"`` for earlier defaults, ``"multilingual"``, a
            path to a weights ``.npz`` (heads or tuned layers), else a Hugging
            Face text-classification model id or local directory.
        label_map: ``{model label: category}`` overrides for Hugging Face models.
        profanity_check_weight: Default model only: weight of
            alt-profanity-check in the toxicity score (``None`` = the weights' own, 0.15).
        precision: MiniLM models only: ``auto``, ``float32`` or ``bfloat16``
            (see :func:`guardrails.toxicity.backends.resolve_precision`).

    Returns:
        A backend with ``categories``, ``default_thresholds`` and ``classify``.
    """
    with _load_lock:
        return _backend_uncached(model, tuple(sorted((label_map or {}).items())),
                                 profanity_check_weight if model == "default" else None, precision)


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
        profanity_check_weight: MiniLM-head models only: toxicity =
            ``(1 - w) * MiniLM head + w * alt-profanity-check``; ``None`` uses
            the weights' own value (0 for the default, 0.3 for ``v1``).
        category_actions: ``{category: action}``; a category that reaches its
            threshold applies its own action (the most severe one wins);
            categories without one use ``action``.
        languages: ``{ISO 639-1 code: model}``: texts detected in that language
            are scored by that model (any value ``model`` accepts, e.g. a
            multilingual Hugging Face toxicity model) instead of ``model``.
        supported_languages: Languages ``model`` covers (default ``["en"]``);
            undetermined texts (``"und"``: short or unclear) count as supported.
        on_unsupported_language: For a text in a language neither ``model``
            nor ``languages`` covers: ``flag`` / ``block`` apply that decision
            (the default model still scores it and the scores are reported),
            ``allow`` only records it.
        language_min_confidence: Below this detector probability a mostly
            Latin-script text is ``"und"``.
        detect_language: ``False`` skips detection (every text is ``"und"``).
        precision: MiniLM encoder: ``auto`` (bfloat16 on CPUs with native
            bf16, else float32), ``float32`` (ONNX Runtime, only the layers
            the heads read) or ``bfloat16`` (PyTorch autocast; scores move by
            < 0.01, ``docs/toxicity.md``).
    """

    type: Literal["toxicity"] = "toxicity"
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    model: str = "default"
    categories: dict[str, float] = Field(default_factory=dict)
    label_map: dict[str, str] = Field(default_factory=dict)
    profanity_check_weight: float | None = Field(None, ge=0.0, le=1.0)
    category_actions: dict[str, Action] = Field(default_factory=dict)
    languages: dict[str, str] = Field(default_factory=dict)
    supported_languages: list[str] = Field(default_factory=lambda: ["en"])
    on_unsupported_language: Literal["flag", "block", "allow"] = "flag"
    language_min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    detect_language: bool = True
    precision: Literal["auto", "float32", "bfloat16"] = "auto"


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
    moderation_model = "greenlist-toxicity"
    deobfuscate = True  # matches words: also scan the de-obfuscated text ("i d i o t", "1d10t")

    def __init__(self, config: ToxicityConfig) -> None:
        super().__init__(config)
        self.backend = load_backend(config.model, config.label_map, config.profanity_check_weight,
                                    config.precision)
        self.routes = {lang: load_backend(m, config.label_map, precision=config.precision)
                       for lang, m in config.languages.items()}
        self.thresholds: dict[str, float] = dict(self.backend.default_thresholds)
        self.thresholds.update(config.categories)
        self.thresholds["toxicity"] = config.threshold

    def language(self, text: str) -> tuple[str, float]:
        """Detected ``(language code or "und", probability)`` of ``text``."""
        if not self.config.detect_language:
            return "und", 0.0
        from guardrails.toxicity.language import detect_language
        from guardrails.toxicity.text import prepare

        return detect_language(prepare(text), self.config.language_min_confidence)

    def _route(self, lang: str) -> str:
        if lang in self.routes:
            return lang
        if lang == "und" or lang in self.config.supported_languages:
            return "default"
        return "unsupported"

    def _score(self, texts: list[str]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        """Scores and language info per text, each text sent to its route's backend."""
        info = []
        for t in texts:
            lang, prob = self.language(t)
            info.append({"code": lang, "confidence": round(prob, 4), "route": self._route(lang)})
        out: list[Any] = [None] * len(texts)
        groups: dict[str, list[int]] = {}
        for i, inf in enumerate(info):
            groups.setdefault(inf["route"], []).append(i)
        for route, idx in groups.items():
            backend = self.routes[route] if route in self.routes else self.backend
            for i, sc in zip(idx, backend.classify([texts[i] for i in idx])):
                out[i] = sc
        return [(out[i], info[i]) for i in range(len(texts))]

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Category probabilities for a batch (default model only, no language routing).

        Args:
            texts: N texts (normalised internally: NFKC, zero-width removal,
                homoglyph folding).

        Returns:
            N dicts ``{category: probability in [0, 1]}``, always with
            ``"toxicity"``; the default model also gives ``hate``,
            ``harassment``, ``violence``, ``sexual`` and ``profanity``.
        """
        return self.backend.classify(list(texts))

    def _flagged(self, scores: dict[str, float]) -> list[str]:
        return [c for c, s in scores.items() if s >= self.thresholds.get(c, 0.5)]

    def _decide(self, scores: dict[str, float], lang: dict[str, Any]) -> GuardrailResult:
        flagged = self._flagged(scores)
        details: dict[str, Any] = {"categories": {c: round(s, 6) for c, s in scores.items()},
                                   "flagged_categories": flagged, "language": lang}
        result = self.fired(scores.get("toxicity", 0.0), details)
        actions = [self.config.category_actions.get(c, self.config.action) for c in flagged
                   if c == "toxicity" or c in self.config.categories or c in self.config.category_actions]
        if lang["route"] == "unsupported" and self.config.on_unsupported_language != "allow":
            details["unsupported_language"] = True
            actions.append(self.config.on_unsupported_language)
        elif lang["route"] == "unsupported":
            details["unsupported_language"] = True
        if actions:
            worst = max(actions, key=lambda a: action_decision(a).severity)
            if result.action is None or action_decision(worst).severity > result.decision.severity:
                result.action = worst
                result.decision = action_decision(worst)
        return result

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Score one text.

        Returns:
            A result with ``score`` = overall toxicity probability and
            ``details = {"categories": {name: score}, "flagged_categories": [...],
            "language": {"code", "confidence", "route"}}`` (plus
            ``"unsupported_language": true`` when no model covers it). It fires
            when toxicity >= ``threshold``, when a category listed in
            ``categories`` or ``category_actions`` reaches its threshold (with
            that category's action), or per ``on_unsupported_language``; the
            most severe action wins.
        """
        scores, lang = self._score([text])[0]
        return self._decide(scores, lang)

    def moderate(self, texts: list[str]) -> list[dict[str, Any]]:
        """OpenAI-moderation-shaped results for a batch (with language routing).

        Args:
            texts: N texts.

        Returns:
            N dicts ``{"flagged": bool, "categories": {cat: bool},
            "category_scores": {cat: float}, "language": {...}}``. Keys: the
            OpenAI categories ``hate``, ``harassment`` and ``violence`` plus
            Greenlist's ``toxicity`` and ``profanity`` (default model); a
            Hugging Face model gives its mapped labels. ``self-harm`` and
            ``illicit`` are not modelled and are omitted.
            ``flagged`` is true when any category is, or when the language is
            unsupported and ``on_unsupported_language`` is not ``allow``.
        """
        out = []
        for scores, lang in self._score(list(texts)):
            flags = {c: s >= self.thresholds.get(c, 0.5) for c, s in scores.items()}
            unsupported = lang["route"] == "unsupported" and self.config.on_unsupported_language != "allow"
            out.append({"flagged": any(flags.values()) or unsupported, "categories": flags,
                        "category_scores": dict(scores), "language": lang})
        return out


__all__ = ["ToxicityConfig", "ToxicityGuardrail", "load_backend", "OPENAI_CATEGORIES"]
