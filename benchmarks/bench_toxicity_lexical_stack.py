"""Experiment (not shipped): a character n-gram model stacked on multilingual-e5, per language.

For each language with training data: TF-IDF of hashed character n-grams (sublinear tf) -> class-balanced
logistic regression on the language's **train** split; then a two-feature logistic regression on the **dev**
split over (logit of e5's highest OpenAI-category score, the n-gram decision value). The configuration (n-gram
analyzer, idf, C) is the one whose stack has the best dev AUROC; the threshold is the dev split's best
macro-F1; test rows are read once. e5's scores are the evaluation's own (``guardrails.toxicity.training.
evaluate.score_texts``: cached, scored as the guardrail scores traffic), on the same rows
(:func:`guardrails.toxicity.training.splits.evaluation_rows`). Results: ``docs/toxicity.md``, "Tried, not
shipped ... n-gram".

    python -m benchmarks.bench_toxicity_lexical_stack [--langs de,fr]   # ~5 min on 2 cores, e5 scores cached
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import scipy.sparse as sp
from scipy.special import logit
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from guardrails.toxicity.text import prepare
from guardrails.toxicity.training.calibration import BLOCKING
from guardrails.toxicity.training.evaluate import score_texts
from guardrails.toxicity.training.extra import extra_rows
from guardrails.toxicity.training.metrics import dev_tuned_threshold, macro_f1, split_indices
from guardrails.toxicity.training.multilingual_v2 import SETS
from guardrails.toxicity.training.splits import Row, evaluation_rows

LANGS = ("en", "de", "fr", "ar", "zh", "pt", "pl")
FEATURES = {"char_wb 1-5": [("char_wb", (1, 5))], "char_wb 2-5 + word 1-2": [("char_wb", (2, 5)), ("word", (1, 2))]}
N_FEATURES = 2**17


def _vectorize(parts: list[tuple[str, tuple[int, int]]], fit: list[str], apply: list[str]) -> tuple[sp.csr_matrix, ...]:
    """Hashed n-gram counts (CSR, N x 2^17) of the ``fit`` and the ``apply`` texts under the analyzers ``parts``."""
    vs = [
        HashingVectorizer(
            analyzer=a, ngram_range=ng, n_features=N_FEATURES // len(parts), alternate_sign=False, norm=None
        )
        for a, ng in parts
    ]
    A, B = (sp.hstack([v.transform(x) for v in vs]).tocsr() for x in (fit, apply))
    return A, B


def _dev_tuned(yd: np.ndarray, sd: np.ndarray, yt: np.ndarray, st: np.ndarray) -> float:
    """Test macro-F1 at the threshold with the best dev macro-F1 (:func:`dev_tuned_threshold`)."""
    return round(macro_f1(yt, (st >= dev_tuned_threshold(yd, sd)).astype(int)), 3)


def run(lang: str, rows: list[Row], e5: np.ndarray) -> dict[str, object]:
    """The e5, n-gram and stacked test macro-F1 of ``lang`` at dev-tuned thresholds (module docstring)."""
    dev, test = split_indices(rows, lang, "dev"), split_indices(rows, lang, "test")
    z5 = logit(np.clip(e5, 1e-5, 1 - 1e-5))  # the stack's first feature
    y = np.array([r.label for r in rows])
    texts, _, _, labels, _ = extra_rows(SETS[lang], ("toxicity",), language=lang)
    train = [prepare(t) for t in texts]
    ev = [prepare(rows[i].text) for i in dev + test]
    best: dict[str, object] = {}
    best_auc = 0.0
    for (name, parts), idf in itertools.product(FEATURES.items(), (True, False)):
        A, B = _vectorize(parts, train, ev)
        tf = TfidfTransformer(sublinear_tf=True, use_idf=idf).fit(A)
        A, B = tf.transform(A), tf.transform(B)
        for C in (1.0, 3.0, 10.0):
            clf = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=1000)
            z = clf.fit(A, labels[:, 0].astype(int)).decision_function(B)
            zd, zt = z[: len(dev)], z[len(dev) :]
            Fd, Ft = np.c_[z5[dev], zd], np.c_[z5[test], zt]
            stack = LogisticRegression(C=1e4, max_iter=1000).fit(Fd, y[dev])
            sd, st = stack.decision_function(Fd), stack.decision_function(Ft)
            auc = roc_auc_score(y[dev], sd)
            if auc > best_auc:
                best_auc = auc
                best = {
                    "config": f"{name}, idf={idf}, C={C}",
                    "stack_dev_auroc": round(auc, 4),
                    "ngram": _dev_tuned(y[dev], zd, y[test], zt),
                    "stacked": _dev_tuned(y[dev], sd, y[test], st),
                    "stack_coef": [round(float(c), 3) for c in stack.coef_[0]],
                }
    return {"lang": lang, "e5": _dev_tuned(y[dev], e5[dev], y[test], e5[test]), **best}


def main() -> None:
    """Print one JSON line per language."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--langs", default=",".join(LANGS))
    args = ap.parse_args()
    rows = evaluation_rows(300, 800)
    scores = score_texts("multilingual-e5", [r.text for r in rows])
    e5 = np.array([max(s.get(c, 0.0) for c in BLOCKING) for s in scores])
    for lang in args.langs.split(","):
        print(json.dumps(run(lang, rows, e5)), flush=True)


if __name__ == "__main__":
    main()
