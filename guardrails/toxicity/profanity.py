"""alt-profanity-check's probability without scikit-learn's per-call overhead.

``profanity_check.predict_prob`` runs a TF-IDF vectorizer and a
``CalibratedClassifierCV`` of five ``LinearSVC`` with sigmoid calibration
(Platt scaling). Through scikit-learn's ``predict_proba`` one short text costs
about 10 ms here, nearly all of it input validation inside the ensemble. The
same probability is ``mean_i expit(-(A_i * (x . w_i + c_i) + B_i))`` over the
five members, which :func:`predict_prob` computes with one sparse product from
the package's own fitted parameters (same numbers to float64 rounding, checked
in ``tests/test_toxicity.py``); the vectorizer is the package's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np


@functools.cache
def _parameters() -> tuple[object, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(vectorizer, W (5, V), c (5,), A (5,), B (5,))`` read from the fitted package model."""
    from profanity_check import profanity_check as pc

    members = pc.model.calibrated_classifiers_
    if pc.model.method != "sigmoid" or any(len(m.calibrators) != 1 for m in members):
        raise RuntimeError("unexpected alt-profanity-check model; use profanity_check.predict_prob")
    W = np.vstack([m.estimator.coef_.ravel() for m in members])
    c = np.array([float(np.ravel(m.estimator.intercept_)[0]) for m in members])
    A = np.array([m.calibrators[0].a_ for m in members], dtype=np.float64)
    B = np.array([m.calibrators[0].b_ for m in members], dtype=np.float64)
    return pc.vectorizer, W, c, A, B


def predict_prob(texts: list[str]) -> np.ndarray:
    """Probability that each text is profane/offensive, as ``profanity_check.predict_prob``.

    Args:
        texts: N texts.

    Returns:
        float64 array (N,) in [0, 1].

    Raises:
        ImportError: ``alt-profanity-check`` is not installed.
    """
    vectorizer, W, c, A, B = _parameters()
    D = np.asarray(vectorizer.transform(texts) @ W.T) + c  # (N, 5) LinearSVC decision values
    return (1.0 / (1.0 + np.exp(A * D + B))).mean(axis=1)


def load() -> Callable[[list[str]], np.ndarray] | None:
    """:func:`predict_prob` when ``alt-profanity-check`` is installed, else None."""
    try:
        _parameters()
    except ImportError:
        return None
    return predict_prob
