"""Training rows from ``shared/data/toxicity_extra`` for the English heads (recipe v6).

Only the ``train`` split of each set is used (:mod:`guardrails.toxicity.training.splits` fixes the splits), so
the dev/test rows :mod:`guardrails.toxicity.training.evaluate` reports on stay unseen. ``ag_news_long``
(research-only licence) is never used. Label mapping per category (NaN = the set says nothing):

* non-toxic row: every category 0;
* toxic row: ``toxicity`` 1; its own category 1; ``hate`` also 1 on HatemojiBuild's threats against groups
  (``violence``), which are hateful; ``harassment`` 0 on hate rows and ``hate`` 0 on harassment rows;
  ``profanity`` and ``sexual`` NaN (the sets do not annotate them).
"""

from __future__ import annotations

import numpy as np

from guardrails.toxicity.training.splits import load_extra


def extra_rows(
    sets: dict[str, float], categories: tuple[str, ...], language: str = "en"
) -> tuple[list[str], list[str], list[str], np.ndarray, np.ndarray]:
    """Train-split rows of ``sets`` in ``language`` with labels for ``categories``.

    Args:
        sets: ``{data set name: row weight}``.
        categories: Label columns (``toxicity`` first).
        language: ISO 639-1 code of the rows kept.

    Returns:
        ``(texts, sources, groups, labels (N, K) float32 with NaN, weights (N,))``.

    Raises:
        ValueError: for ``ag_news_long`` (research-only data must not train shipped weights).
    """
    if "ag_news_long" in sets:
        raise ValueError("ag_news_long is research / non-commercial data: measure with it, never train on it")
    texts, src, groups, labels, weights = [], [], [], [], []
    for r in load_extra(tuple(sets)):
        if r.split != "train" or r.language != language:
            continue
        y = np.full(len(categories), np.nan, dtype=np.float32)
        if r.label == 0:
            y[:] = 0.0
        else:
            y[categories.index("toxicity")] = 1.0
            own = (
                {"violence": ("violence", "hate")}.get(r.category, (r.category,))
                if r.dataset == "hatemoji_build"
                else (r.category,)
            )
            for c in own:
                if c in categories:
                    y[categories.index(c)] = 1.0
            if r.category == "hate" and "harassment" in categories:
                y[categories.index("harassment")] = 0.0
            if r.category == "harassment" and "hate" in categories:
                y[categories.index("hate")] = 0.0
        texts.append(r.text)
        src.append(r.dataset)
        groups.append(f"{r.dataset}:{r.label}:{r.category}")
        labels.append(y)
        weights.append(sets[r.dataset])
    return (
        texts,
        src,
        groups,
        np.asarray(labels, dtype=np.float32).reshape(-1, len(categories)),
        np.asarray(weights, dtype=np.float64),
    )


def prose_rows(paragraphs: int | None, categories: tuple[str, ...]) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Benign negatives from the *train* books of British novels: the scoring units of ``paragraphs`` paragraphs.

    Each paragraph is cut into the units the guardrail scores (sentences and windows of adjacent sentences,
    :func:`guardrails.toxicity.sentences.scoring_units`), every category labelled 0, so the heads see the
    shape of long benign text they are applied to. Dev and test books are never used.

    Args:
        paragraphs: Paragraphs taken (a seeded sample), or None for every paragraph of the train books.
        categories: The K label columns.

    Returns:
        ``(unit texts, the sentences each unit is composed of (guardrails.toxicity.scorer.window_parts),
        labels (N, K) of zeros)``.
    """
    from guardrails.toxicity.scorer import text_units, window_parts
    from guardrails.toxicity.training.splits import load_novels, sample

    train = [r for r in load_novels() if r.split == "train"]
    texts: list[str] = []
    parts: list[list[str]] = []
    for r in sample(train, len(train) if paragraphs is None else paragraphs):
        units, sentences = text_units(r.text)
        texts += [r.text[a:b] for a, b in units]
        parts += window_parts(r.text, units, sentences)
    return texts, parts, np.zeros((len(texts), len(categories)), dtype=np.float32)


__all__ = ["extra_rows", "prose_rows"]
