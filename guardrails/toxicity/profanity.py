"""alt-profanity-check's probability without scikit-learn's per-call overhead.

``profanity_check.predict_prob`` runs a TF-IDF vectorizer (word unigrams, lower case, English stop words, l2
norm) and a ``CalibratedClassifierCV`` of five ``LinearSVC`` with sigmoid calibration (Platt scaling).
Through scikit-learn one short text costs about 10 ms here, nearly all of it input validation inside the
ensemble; even the vectorizer's ``transform`` alone costs ~1.4 ms for the dozen units of a 150-word answer.
The same probability is ``mean_i expit(-(A_i * (x . w_i + c_i) + B_i))`` over the five members, with ``x``
the text's l2-normalised TF-IDF vector. :func:`predict_prob` computes it from the package's own fitted
parameters: the vectorizer's preprocessor and tokenizer give the words (its analyzer's stop-word filter is left to
the vocabulary look-up: no stop word is in the vocabulary), a dictionary look-up their columns, and
``x . w_i = sum_t n_t idf_t w_it / ||n * idf||`` over the text's distinct known words (same numbers to float64
rounding, checked in ``tests/guardrails/test_toxicity.py``); ~0.2 ms for the same answer.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Model:
    """The fitted package model as arrays: ``words(text) -> tokens`` (the analyzer's, stop words kept: none
    is in the vocabulary, so the known words are the analyzer's), ``column[word]``, ``idf (V,)``, ``W (V, 5)`` the
    members' weights (one column each), ``c, A, B (5,)`` intercepts and Platt parameters."""

    words: Callable[[str], list[str]]
    column: dict[str, int]
    idf: np.ndarray
    W: np.ndarray
    c: np.ndarray
    A: np.ndarray
    B: np.ndarray


def _compose(preprocess: Callable[[str], str], tokenize: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """``text -> tokenize(preprocess(text))``."""
    return lambda text: tokenize(preprocess(text))


@functools.cache
def _model() -> _Model:
    """Read the fitted alt-profanity-check model (vectorizer + calibrated LinearSVC ensemble)."""
    from profanity_check import profanity_check as pc

    members = pc.model.calibrated_classifiers_
    vectorizer = pc.vectorizer
    if (
        pc.model.method != "sigmoid"
        or any(len(m.calibrators) != 1 for m in members)
        or vectorizer.norm != "l2"
        or vectorizer.sublinear_tf
        or not vectorizer.use_idf
        or vectorizer.analyzer != "word"
        or vectorizer.ngram_range != (1, 1)
        or not (vectorizer.get_stop_words() or frozenset()).isdisjoint(vectorizer.vocabulary_)
    ):
        raise RuntimeError("unexpected alt-profanity-check model; use profanity_check.predict_prob")
    return _Model(
        words=_compose(vectorizer.build_preprocessor(), vectorizer.build_tokenizer()),
        column=dict(vectorizer.vocabulary_),
        idf=np.asarray(vectorizer.idf_, dtype=np.float64),
        W=np.ascontiguousarray(np.vstack([m.estimator.coef_.ravel() for m in members]).T),
        c=np.array([float(np.ravel(m.estimator.intercept_)[0]) for m in members]),
        A=np.array([m.calibrators[0].a_ for m in members], dtype=np.float64),
        B=np.array([m.calibrators[0].b_ for m in members], dtype=np.float64),
    )


def predict_prob(texts: list[str]) -> np.ndarray:
    """Probability that each text is profane/offensive, as ``profanity_check.predict_prob``.

    Args:
        texts: N texts.

    Returns:
        float64 array (N,) in [0, 1].

    Raises:
        ImportError: ``alt-profanity-check`` is not installed.
    """
    m = _model()
    D = np.tile(m.c, (len(texts), 1))  # (N, 5) LinearSVC decision values; a text with no known word: c
    for row, text in enumerate(texts):
        counts = Counter(filter(m.column.__contains__, m.words(text)))
        if counts:
            cols = np.fromiter(map(m.column.__getitem__, counts), dtype=np.int64, count=len(counts))
            x = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * m.idf[cols]
            D[row] += (x @ m.W[cols]) / np.sqrt(x @ x)
    return (1.0 / (1.0 + np.exp(m.A * D + m.B))).mean(axis=1)


def load() -> Callable[[list[str]], np.ndarray] | None:
    """:func:`predict_prob` when ``alt-profanity-check`` is installed, else None."""
    try:
        _model()
    except ImportError:
        return None
    return predict_prob
