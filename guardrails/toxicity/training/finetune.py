"""Training-data and evaluation helpers shared by the toxicity recipes (``train.py``, ``tune_layers.py``,
``multilingual.py``).

* :func:`build_dataset`: the shared corpora (:func:`guardrails.toxicity.training.data.load_corpus`: Davidson,
  OLID, Jigsaw identity templates) plus Greenlist's hand-written functional examples (``examples/*.tsv``:
  negation, counter-speech, positive identity statements, reclaimed slurs, hate without profanity, harmless
  profanity, threats), with per-category labels.
* :func:`encode_bottom`: hidden states after MiniLM's first layers, computed once for fine-tuning the layers
  above (:mod:`guardrails.toxicity.training.tune_layers`).
* :func:`score_split`, :func:`functional_report`: AUROC per source and accuracy per functional case.

(The first fine-tuning experiment, top layers of all six with a last-layer head, lived here until 2026-12-06;
its measured run is in ``docs/toxicity.md``. Recipe v9 in ``tune_layers.py`` replaces it.)
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from guardrails.toxicity.training.data import load_corpus

SEED = 0
CATEGORIES = ("toxicity", "hate", "harassment", "violence", "profanity")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TRAIN_MAX_LEN = 64


def read_functional(path: Path) -> list[dict[str, str]]:
    """Rows of a functional-examples TSV (``text``, ``case``, ``toxicity`` and optional category columns).

    Args:
        path: A TSV such as ``examples/functional_train.tsv``.

    Returns:
        One dict per row (strings; ``""`` = not labelled).
    """
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def build_dataset(
    seed: int = SEED,
    folder: Path | None = None,
    categories: tuple[str, ...] = CATEGORIES,
    examples: tuple[str, ...] = ("functional_train.tsv",),
) -> dict[str, Any]:
    """Training rows with labels for ``categories``.

    Args:
        seed: Seed of the corpus subsampling.
        folder: Shared toxicity data folder (default :func:`guardrails.toxicity.training.data.shared_dir`).
        categories: Label columns, a subset of ``toxicity, hate, harassment,
            violence, sexual, profanity``; ``toxicity`` first.
        examples: Hand-written example files under ``examples/``, appended
            as ``functional`` rows.

    Returns:
        ``{"texts": [...], "source": [...], "group": [...], "labels": (N, K) float
        array with nan for unlabelled}``. ``violence`` and ``sexual`` are 0 on
        every shared row labelled non-toxic and on Jigsaw rows, unlabelled on
        other shared rows, and come from the functional examples otherwise.
    """
    corpus = load_corpus(folder, seed=seed)
    from guardrails.toxicity.training.data import CATEGORIES as BASE

    base = corpus.label_array()
    n = len(corpus.texts)
    Y = np.full((n, len(categories)), np.nan, dtype=np.float32)
    for k, c in enumerate(BASE):
        Y[:, categories.index(c)] = base[:, k]
    src = list(corpus.source)
    for cat in set(categories) - set(BASE):  # only hand-written positives exist
        col = categories.index(cat)
        Y[base[:, 0] == 0, col] = 0.0
        Y[np.asarray(src) == "jigsaw", col] = 0.0
    texts, groups = list(corpus.texts), list(corpus.group)
    extra = []
    for r in (r for name in examples for r in read_functional(EXAMPLES / name)):
        texts.append(r["text"])
        src.append("functional")
        groups.append(f"functional:{r['case']}")
        extra.append([float(r[c]) if r.get(c, "") != "" else np.nan for c in categories])
    Y = np.vstack([Y, np.asarray(extra, dtype=np.float32)])
    return {"texts": texts, "source": src, "group": groups, "labels": Y}


def encode_bottom(
    model: Any, tokenizer: Any, texts: list[str], n_frozen: int, max_len: int = TRAIN_MAX_LEN, batch: int = 128
) -> list[tuple[Any, Any]]:
    """Hidden states after the first ``n_frozen`` layers, one (L, D) float16 tensor per text.

    Returns:
        List of ``(hidden, input_len)`` in the order of ``texts``.
    """
    import torch

    from guardrails.toxicity.model import additive_mask

    out: list[Any] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    t0 = time.time()
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            )
            h = model.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
            am = additive_mask(enc["attention_mask"], h.dtype)
            for layer in model.encoder.layer[:n_frozen]:
                h = layer(h, am)
                h = h[0] if isinstance(h, tuple) else h
            lens = enc["attention_mask"].sum(1)
            for j, i in enumerate(idx):
                out[i] = h[j, : int(lens[j])].to(torch.float16).clone()
            if (s // batch) % 50 == 0:
                print(f"  encoded {s + len(idx)}/{len(texts)} ({time.time() - t0:.0f} s)", flush=True)
    return out


def _pad(batch: list[Any]) -> tuple[Any, Any]:
    import torch

    L = max(x.shape[0] for x in batch)
    D = batch[0].shape[1]
    h = torch.zeros(len(batch), L, D)
    m = torch.zeros(len(batch), L, dtype=torch.long)
    for j, x in enumerate(batch):
        h[j, : x.shape[0]] = x.float()
        m[j, : x.shape[0]] = 1
    return h, m


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), 4)


def score_split(P: np.ndarray, Y: np.ndarray, src: np.ndarray, k: int = 0) -> dict[str, float]:
    """AUROC per source (and pooled) of column ``k`` of ``P`` against ``Y``; jigsaw nontoxic FPR@0.5."""
    out: dict[str, float] = {}
    lab = ~np.isnan(Y[:, k])
    for name in ("olid", "davidson", "jigsaw", "all"):
        m = lab & ((src == name) if name != "all" else True)
        y = Y[m, k]
        if 0 < y.sum() < len(y):
            out[f"{name}_auroc"] = _auroc(y, P[m, k])
    if k == 0:
        jn = (src == "jigsaw") & (Y[:, 0] == 0)
        out["jigsaw_nontoxic_fpr"] = round(float((P[jn, 0] >= 0.5).mean()), 4)
    return out


def functional_report(scores: np.ndarray, rows: list[dict[str, str]], threshold: float = 0.5) -> dict[str, Any]:
    """AUROC and per-case accuracy of toxicity ``scores`` on functional rows (``case``, ``toxicity``)."""
    y = np.asarray([int(r["toxicity"]) for r in rows])
    cases: dict[str, list[int]] = {}
    for r, s, t in zip(rows, scores, y, strict=False):
        cases.setdefault(r["case"], []).append(int((s >= threshold) == bool(t)))
    return {
        "auroc": _auroc(y, scores),
        "accuracy": round(float(((scores >= threshold) == y).mean()), 4),
        "per_case_accuracy": {c: round(float(np.mean(v)), 3) for c, v in sorted(cases.items())},
    }
