"""Unit-level scoring with a sentence-score cache: max per category over a text's sentences and windows.

A text is scored as the maximum, per category, over its scoring units (:func:`guardrails.toxicity.sentences.
scoring_units`), and the unit with the highest score is reported as the text's span. Unit scores are cached
(least-recently-used, keyed by model name and unit text), so a streamed output whose sentences were scored
window by window costs only dictionary look-ups in the final whole-text check.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardrails.toxicity.sentences import scoring_units, split_sentences


class UnitCache:
    """Thread-safe LRU cache of unit scores, keyed by ``(model, unit text)``.

    Args:
        maxsize: Entries kept (each a small dict of category scores); 0 disables caching.

    Attributes:
        hits: Look-ups answered from the cache since construction (or :meth:`clear`).
        misses: Look-ups that had to run the model.
    """

    def __init__(self, maxsize: int = 8192) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def scores(
        self, model: str, texts: list[str], compute: Callable[[list[str]], list[dict[str, float]]]
    ) -> list[dict[str, float]]:
        """Scores of ``texts`` under ``model``, running ``compute`` only on the ones not cached.

        Args:
            model: Name of the model (part of the key: two models never share entries).
            texts: N unit texts.
            compute: Batch scorer, M texts -> M ``{category: probability}`` dicts.

        Returns:
            N score dicts, in the order of ``texts``.
        """
        out: list[dict[str, float] | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                hit = self._data.get((model, t))
                if hit is None:
                    todo.setdefault(t, []).append(i)
                else:
                    self._data.move_to_end((model, t))
                    out[i] = hit
            self.hits += len(texts) - sum(len(v) for v in todo.values())
            self.misses += len(todo)
        if todo:
            keys = list(todo)
            for t, sc in zip(keys, compute(keys), strict=True):
                for i in todo[t]:
                    out[i] = sc
            if self.maxsize > 0:
                with self._lock:
                    for t, sc in zip(keys, (out[todo[k][0]] for k in keys), strict=True):
                        self._data[(model, t)] = sc  # type: ignore[assignment]
                    while len(self._data) > self.maxsize:
                        self._data.popitem(last=False)
        return out  # type: ignore[return-value]


@dataclass
class TextScores:
    """Scores of one text aggregated over its units.

    Attributes:
        scores: ``{category: max over units}`` (all 0 for a blank text).
        units: The scored ``(start, end)`` spans.
        unit_scores: One ``{category: probability}`` per unit.
        sentences: The text's sentence spans (``[]`` when the text was scored as one short unit and no
            sentence split was needed).
        top: ``{category: index into units}`` of the unit that reached the maximum.
    """

    scores: dict[str, float]
    units: list[tuple[int, int]] = field(default_factory=list)
    unit_scores: list[dict[str, float]] = field(default_factory=list)
    sentences: list[tuple[int, int]] = field(default_factory=list)
    top: dict[str, int] = field(default_factory=dict)

    def span(self, category: str) -> tuple[int, int] | None:
        """``(start, end)`` of the unit with the highest ``category`` score, or ``None`` without units."""
        k = self.top.get(category)
        return None if k is None else self.units[k]


def text_units(text: str, context: int = 3) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``(unit spans, sentence spans)`` of ``text`` as :func:`score_text` scores it: a text of at most
    :data:`~guardrails.toxicity.sentences.SHORT_WORDS` words is one unit and is not split (sentences ``[]``);
    a longer one is split into sentences and cut into :func:`~guardrails.toxicity.sentences.scoring_units`."""
    from guardrails.toxicity.sentences import SHORT_WORDS

    if len(text.split()) <= SHORT_WORDS:
        return scoring_units(text, None, context=context), []
    sentences = split_sentences(text)
    return scoring_units(text, sentences, context=context), sentences


def score_text(text: str, backend: Any, model: str, cache: UnitCache, context: int = 3) -> TextScores:
    """Score ``text`` unit by unit with ``backend`` (through ``cache``) and keep the maximum per category.

    Args:
        text: The text to score.
        backend: Object with ``categories`` and ``classify(list[str]) -> list[dict[str, float]]``.
        model: Cache key of the backend (e.g. the policy's model name).
        cache: The :class:`UnitCache` to read and fill.
        context: Largest context window, in sentences (:func:`scoring_units`).

    Returns:
        A :class:`TextScores`.
    """
    units, sentences = text_units(text, context)
    if not units:
        return TextScores({c: 0.0 for c in backend.categories})
    unit_scores = _unit_scores(text, units, sentences, backend, model, cache)
    scores: dict[str, float] = {}
    top: dict[str, int] = {}
    for k, sc in enumerate(unit_scores):
        for c, v in sc.items():
            if v > scores.get(c, -1.0):
                scores[c], top[c] = float(v), k
    return TextScores(scores, units, unit_scores, sentences, top)


WINDOW_KEY = "\x1f"
"""Cache-key prefix of a composed window: its score differs from the same text encoded whole (a short text)."""


def window_parts(text: str, units: list[tuple[int, int]], sentences: list[tuple[int, int]]) -> list[list[str]]:
    """For each unit of ``text``, the texts of the sentences it is composed of: the sentences inside it when there
    are several (a context window), else ``[unit text]``.

    Args:
        text: The scored text.
        units: Its unit spans (:func:`guardrails.toxicity.sentences.scoring_units`).
        sentences: Its sentence spans (``[]`` for a short text scored whole).

    Returns:
        One list of texts per unit.
    """
    out = []
    for a, b in units:
        inside = [text[s:e] for s, e in sentences if s >= a and e <= b]
        out.append(inside if len(inside) > 1 else [text[a:b]])
    return out


def _unit_scores(
    text: str,
    units: list[tuple[int, int]],
    sentences: list[tuple[int, int]],
    backend: Any,
    model: str,
    cache: UnitCache,
) -> list[dict[str, float]]:
    """Scores of ``units`` through ``cache``.

    When the backend composes (``backend.composes``: :meth:`guardrails.toxicity.backends.MiniLMHead.classify`
    with ``parts``), a window of several sentences is scored from its sentences' encoder runs, and every unit
    not in the cache goes through one call, so each sentence is encoded once whatever windows contain it.
    """
    texts = [text[a:b] for a, b in units]
    if not getattr(backend, "composes", False):
        return cache.scores(model, texts, backend.classify)
    parts = {
        WINDOW_KEY + t: ps for t, ps in zip(texts, window_parts(text, units, sentences), strict=True) if len(ps) > 1
    }
    keys = [WINDOW_KEY + t if WINDOW_KEY + t in parts else t for t in texts]

    def compute(todo: list[str]) -> list[dict[str, float]]:
        return backend.classify([k.removeprefix(WINDOW_KEY) for k in todo], [parts.get(k, [k]) for k in todo])

    return cache.scores(model, keys, compute)


def offending_sentences(
    text: str,
    ts: TextScores,
    thresholds: dict[str, float],
    categories: list[str],
    backend: Any,
    model: str,
    cache: UnitCache,
) -> list[tuple[int, int]]:
    """The sentences to remove so that no unit of ``text`` reaches a threshold in ``categories``.

    A sentence goes when its own score reaches a threshold; a context window that reaches one although none
    of its sentences does takes all its sentences. A short text scored as one unit is split and its sentences
    scored on their own (through ``cache``); when none of them fires alone, the whole text goes.

    Returns:
        Sorted, distinct sentence ``(start, end)`` spans.
    """

    def fires(sc: dict[str, float]) -> bool:
        return any(sc.get(c, 0.0) >= thresholds.get(c, 0.5) for c in categories)

    sentences = ts.sentences or split_sentences(text)
    own = cache.scores(model, [text[a:b] for a, b in sentences], backend.classify)
    hit = {s for s, sc in zip(sentences, own, strict=True) if fires(sc)}
    for (a, b), sc in zip(ts.units, ts.unit_scores, strict=True):
        inside = [s for s in sentences if s[0] >= a and s[1] <= b]
        if fires(sc) and not hit.intersection(inside):
            hit.update(inside or [(a, b)])
    return sorted(hit)


def redact_spans(text: str, spans: list[tuple[int, int]], placeholder: str = "[removed]") -> str:
    """``text`` with each span replaced by ``placeholder`` (spans sorted, non-overlapping)."""
    out, pos = [], 0
    for a, b in spans:
        out += [text[pos:a], placeholder]
        pos = b
    out.append(text[pos:])
    return "".join(out)


__all__ = ["UnitCache", "TextScores", "score_text", "text_units", "window_parts", "offending_sentences", "redact_spans"]
