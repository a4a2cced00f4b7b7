"""Classifier backends of the toxicity guardrail, loaded once per process.

* :class:`MiniLMHead` - the packaged default: all-MiniLM-L6-v2 layer
  embeddings with negation / reporting cues (:mod:`guardrails.toxicity.features`)
  and the logistic heads in ``weights/minilm_head.npz`` (recipe v12: layers 3
  and 2, so half the encoder runs, on the int8 ONNX encoder with layers 1-3
  fine-tuned, ``weights/minilm_layers.npz``, emoji named in words; trained by
  :mod:`guardrails.toxicity.training.train`). ``model: v8`` (the same heads on
  the packaged layers), ``v7`` (on the float32 encoder), ``v3`` / ``v2`` / ``v1`` load the earlier defaults (``weights/v3/``:
  layers 6, 2 and 4; ``weights/v2/``, ``weights/v1/``: last layer only); the
  toxicity score is averaged with ``alt-profanity-check`` (weight 0.15; 0.3 for v1).
* :class:`guardrails.toxicity.hf.HFClassifier` - any Hugging Face
  text-classification model (hub id or local directory).

Both expose ``categories`` (tuple of names, always including ``"toxicity"``),
``default_thresholds`` and ``classify(texts) -> list[dict[str, float]]``;
both serialise model calls with a lock so ``classify`` is thread-safe.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from guardrails.toxicity import profanity
from guardrails.toxicity.features import LAST_LAYER, head_inputs
from guardrails.toxicity.text import prepare

log = logging.getLogger(__name__)
WEIGHTS = Path(__file__).resolve().parent / "weights" / "minilm_head.npz"
# The default (v12) and the earlier defaults, each in weights/<version>/ (see docs/toxicity.md). v9's fine-tuned
# layers (6.6 MB) left the repository with v12 (the 25 MiB weight budget): `--recipe v9` rebuilds them.
NAMED_WEIGHTS = {
    "v12": WEIGHTS,
    **{v: WEIGHTS.parent / v / WEIGHTS.name for v in ("v1", "v2", "v3", "v5", "v6", "v7", "v8")},
}
# word pieces per piece: tweets are <= 62 at p95; windows overlap by 16 words, so a cut tail is seen by the next one
MAX_TOKENS = 64
_WINDOW_WORDS, _STRIDE_WORDS = 48, 32  # short windows: one toxic sentence is not diluted


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _windows(text: str) -> list[str]:
    """Split a long text into the pieces that are scored (a short text is one piece).

    A text of at most 48 words is scored whole. A longer one is split into
    sentences (a sentence under 4 words joins the next one) so one toxic
    sentence is scored on its own and not diluted by its neighbours; a
    sentence over 48 words is cut into overlapping 48-word windows (stride 32).
    """
    words = text.split()
    if len(words) <= _WINDOW_WORDS:
        return [text]
    pieces: list[str] = []
    carry = ""
    for sent in _SENTENCE_END.split(text):
        sent = f"{carry} {sent}".strip() if carry else sent.strip()
        if len(sent.split()) < 4:
            carry = sent
            continue
        carry = ""
        w = sent.split()
        if len(w) <= _WINDOW_WORDS:
            pieces.append(sent)
        else:
            pieces += [
                " ".join(w[i : i + _WINDOW_WORDS])
                for i in range(0, max(len(w) - _WINDOW_WORDS, 0) + _STRIDE_WORDS, _STRIDE_WORDS)
            ]
    if carry:
        if pieces:
            pieces[-1] = f"{pieces[-1]} {carry}"
        else:
            pieces.append(carry)
    return pieces


def _split(texts: list[str], emoji_names: bool = False) -> tuple[list[str], list[int]]:
    """Prepare (:func:`guardrails.toxicity.text.prepare`) and window ``texts``; returns the pieces and the owner
    index of each."""
    pieces, owner = [], []
    for i, text in enumerate(texts):
        for piece in _windows(prepare(text, emoji_names)):
            if piece:
                pieces.append(piece)
                owner.append(i)
    return pieces, owner


def _max_by_owner(scores: np.ndarray, owner: list[int], n: int) -> np.ndarray:
    """Per text, the maximum over its windows of ``scores`` (pieces, K) -> (n, K); 0 if none."""
    out = np.zeros((n, scores.shape[1]), dtype=np.float64)
    for row, i in zip(scores, owner, strict=True):
        np.maximum(out[i], row, out=out[i])
    return out


Precision = Literal["auto", "float32", "int8", "bfloat16"]


def resolve_precision(precision: Precision, fitted: str = "float32") -> str:
    """The encoder precision to run: ``float32``, ``int8`` or ``bfloat16``.

    Args:
        precision: As configured; ``auto`` is the precision the heads were fit on.
        fitted: The heads' own precision (``precision`` in the weights file; ``float32`` for files without one).

    Measured through the gateway on an AMX (native bf16) Xeon, one request at a time: the default policy added
    138 ms p50 with PyTorch bfloat16 (all six layers) and 54 ms with ONNX float32 (docs/benchmarks.md, "Gateway
    overhead vs LiteLLM proxy"); int8 halves the ONNX encoder's time again (:mod:`guardrails.toxicity.onnx_encoder`).
    ``bfloat16`` stays available for batch throughput on such CPUs (scans).
    """
    return fitted if precision == "auto" else precision


class TorchEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, unit norm) straight through ``transformers``.

    Same numbers as ``SentenceTransformer.encode`` on the packaged model (to
    float32 rounding, or to bfloat16 rounding under ``bfloat16``) with less
    per-call overhead: texts are sorted by length, padded per batch of 16 and
    truncated to :data:`MAX_TOKENS` word pieces.

    Args:
        precision: ``float32``, or ``bfloat16`` to run the forward pass under
            ``torch.autocast`` (on a CPU with AVX512-BF16: 2.1x the throughput;
            embeddings keep cosine similarity >= 0.9999 with float32 on OLID
            tweets, see ``docs/toxicity.md``).
        batch_size: Texts per forward pass (16 measured fastest on 2 cores:
            less padding than 32 or 64).
        tuned: Fine-tuned layer weights loaded into the model
            (:func:`guardrails.toxicity.onnx_encoder.load_tuned`), or None.
    """

    def __init__(self, precision: str = "float32", batch_size: int = 16, tuned: Path | None = None) -> None:
        from guardrails.toxicity.model import load_base
        from guardrails.toxicity.onnx_encoder import load_tuned

        self.model, self.tokenizer = load_base()
        if tuned is not None:
            load_tuned(self.model, tuned)
        self.precision = precision
        self.batch_size = batch_size
        self.lock = threading.Lock()  # held by callers around encode: one forward pass at a time

    def encode(self, texts: list[str], layers: tuple[int, ...] = (6,)) -> np.ndarray:
        """Unit-norm mean-pooled embeddings of ``texts`` at the given layers.

        Args:
            texts: N prepared texts.
            layers: Transformer layers to pool (1-6; 6 = the last, the usual
                sentence embedding), concatenated in this order.

        Returns:
            float32 array (N, 384 * len(layers)).
        """
        import torch

        from guardrails.toxicity.model import mean_pool

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        dim = self.model.config.hidden_size
        out = np.zeros((len(texts), dim * len(layers)), dtype=np.float32)
        bf16 = self.precision == "bfloat16"
        hidden_states = layers != (6,)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
                )
                res = self.model(**enc, output_hidden_states=hidden_states)
                for j, layer in enumerate(layers):
                    h = res.hidden_states[layer] if hidden_states else res.last_hidden_state
                    e = torch.nn.functional.normalize(mean_pool(h.float(), enc["attention_mask"]), dim=-1)
                    out[idx, j * dim : (j + 1) * dim] = e.numpy()
        return out


_enc_lock = threading.Lock()
_encoders: dict[tuple[str, int, Path | None, str], Any] = {}


def shared_encoder(
    precision: Precision = "auto", depth: int = LAST_LAYER, tuned: Path | None = None, kind: str = "minilm"
) -> Any:
    """The process-wide encoder for ``precision``, ``depth`` and fine-tuned layers ``tuned``, loaded on
    first use.

    ``kind`` ``multilingual-e5`` is :class:`guardrails.toxicity.multilingual_e5.E5Encoder` (ONNX Runtime,
    float32 or int8, all 12 layers); the default ``minilm`` is the packaged MiniLM:

    ``bfloat16`` runs :class:`TorchEncoder` under autocast (all 6 layers);
    ``float32`` and ``int8`` run the first ``depth`` layers on
    :class:`guardrails.toxicity.onnx_encoder.OnnxEncoder` (ONNX Runtime: the
    same numbers as PyTorch at a quarter of its one-text latency on CPUs
    without bf16; int8 about half again). Both have ``encode(texts, layers)`` and ``lock``.

    Raises:
        ValueError: e5 with ``bfloat16`` (it runs on ONNX Runtime only).
    """
    resolved = resolve_precision(precision)
    if kind != "minilm" and resolved == "bfloat16":
        raise ValueError("e5 runs on ONNX Runtime: use precision float32, int8 or auto")
    key = (resolved, LAST_LAYER if resolved == "bfloat16" else depth, tuned, kind)
    with _enc_lock:
        if key not in _encoders:
            if kind == "multilingual-e5":
                from guardrails.toxicity.multilingual_e5 import E5Encoder

                _encoders[key] = E5Encoder(int8=resolved == "int8", tuned=tuned)
            elif resolved == "bfloat16":
                _encoders[key] = TorchEncoder(resolved, tuned=tuned)
            else:
                from guardrails.toxicity.onnx_encoder import OnnxEncoder

                _encoders[key] = OnnxEncoder(depth=depth, max_tokens=MAX_TOKENS, int8=resolved == "int8", tuned=tuned)
        return _encoders[key]


class MiniLMHead:
    """The default classifier: MiniLM sentence embedding -> one sigmoid per category.

    Args:
        weights: Path of the ``.npz`` with ``W`` (K, D), ``b`` (K,),
            ``categories`` (K,) and optionally the feature spec ``layers`` and
            ``cues`` (:mod:`guardrails.toxicity.features`; absent = the last
            layer alone, D = 384), the encoder ``precision`` the heads were
            fit on (absent = ``float32``), ``tuned``, the name of a file
            beside it with fine-tuned encoder layers (absent = the packaged
            encoder), ``encoder`` (absent = MiniLM; ``multilingual-e5``:
            :mod:`guardrails.toxicity.multilingual_e5`) and ``emoji_names`` (true: texts are prepared with emoji
            named, :func:`guardrails.toxicity.text.name_emoji`; absent = false); its ``.json`` sibling holds tuned
            thresholds and ``profanity_check_weight``.
        pc_weight: Weight ``a`` of alt-profanity-check in the toxicity score,
            ``(1 - a) * head + a * predict_prob``; ``None`` takes it from the
            metadata (0.3), 0 disables it. Falls back to 0 with a warning when
            ``alt-profanity-check`` is not installed.
        precision: Encoder precision, see :func:`resolve_precision` (``auto``: the heads' own).

    Raises:
        FileNotFoundError: when the weights are missing (run
            ``python -m guardrails.toxicity.training.train``).
    """

    def __init__(self, weights: Path = WEIGHTS, pc_weight: float | None = None, precision: Precision = "auto") -> None:
        data = np.load(weights)
        self.W = data["W"].astype(np.float32)
        self.b = data["b"].astype(np.float32)
        self.categories: tuple[str, ...] = tuple(str(c) for c in data["categories"])
        self.layers = tuple(int(x) for x in data["layers"]) if "layers" in data.files else (LAST_LAYER,)
        self.cues = int(data["cues"]) if "cues" in data.files else 0
        self.emoji_names = bool(data["emoji_names"]) if "emoji_names" in data.files else False
        self.precision = resolve_precision(
            precision, str(data["precision"]) if "precision" in data.files else "float32"
        )
        # fine-tuned encoder layers, a file beside the heads (recipes v9, v12: guardrails.toxicity.training.tune_layers)
        self.tuned = weights.parent / str(data["tuned"]) if "tuned" in data.files else None
        meta_path = weights.with_suffix(".json")
        meta = json.loads(meta_path.read_text("utf-8")) if meta_path.exists() else {}
        self.default_thresholds: dict[str, float] = {
            c: float(meta.get("thresholds", {}).get(c, 0.5)) for c in self.categories
        }
        kind = str(data["encoder"]) if "encoder" in data.files else "minilm"
        self.encoder = shared_encoder(self.precision, depth=max(self.layers), tuned=self.tuned, kind=kind)
        self.pc_weight = float(meta.get("profanity_check_weight", 0.0)) if pc_weight is None else float(pc_weight)
        self._pc = profanity.load() if self.pc_weight > 0 else None
        if self.pc_weight > 0 and self._pc is None:  # documented fallback: MiniLM head alone
            log.warning("alt-profanity-check not installed; toxicity uses the MiniLM head only")
            self.pc_weight = 0.0

    @property
    def composes(self) -> bool:
        """Whether :meth:`classify` can score a text from the runs of its parts (ONNX encoders can)."""
        return hasattr(self.encoder, "encode_composed")

    def classify(self, texts: list[str], parts: list[list[str]] | None = None) -> list[dict[str, float]]:
        """Category probabilities for each text.

        Args:
            texts: N raw texts; each is prepared (normalised, tweet artefacts
                removed) and, past 48 words, scored per sentence (see
                :func:`_windows`), keeping the maximum per category.
            parts: Optional, when :attr:`composes`: for each text, its consecutive pieces (e.g. the sentences
                of a context window). The encoder then runs on each distinct piece once and a text's layer
                embedding is the word-piece-weighted mean of its pieces' mean-pooled states (a window of
                sentences costs no encoder time beyond its sentences'; attention does not cross the pieces).
                The cues and the profanity term still read the whole text.

        Returns:
            N dicts ``{category: probability in [0, 1]}`` (empty text -> all 0).

        Raises:
            ValueError: ``parts`` of another length than ``texts``, or with an encoder that cannot compose.
        """
        if parts is not None:
            return self._classify_composed(texts, parts)
        pieces, owner = _split(texts, self.emoji_names)
        if pieces:
            with self.encoder.lock:
                X = self.encoder.encode(pieces, self.layers)
            P = self._probabilities(X, pieces)
        else:
            P = np.zeros((0, len(self.categories)))
        return self._dicts(_max_by_owner(P, owner, len(texts)))

    def _classify_composed(self, texts: list[str], parts: list[list[str]]) -> list[dict[str, float]]:
        if len(parts) != len(texts):
            raise ValueError(f"{len(parts)} parts lists for {len(texts)} texts")
        if not self.composes:
            raise ValueError(f"the {self.precision} encoder cannot compose texts from parts: use float32 or int8")
        memo: dict[str, str] = {}  # a sentence recurs in the windows that hold it: prepare it once

        def prep(x: str) -> str:
            if x not in memo:
                memo[x] = prepare(x, self.emoji_names)
            return memo[x]

        prepared = [[q for q in map(prep, ps) if q] for ps in parts]
        whole = [prep(t) for t in texts]
        keep = [i for i, ps in enumerate(prepared) if ps and whole[i]]
        P = np.zeros((len(texts), len(self.categories)))
        if keep:
            with self.encoder.lock:
                X = self.encoder.encode_composed([prepared[i] for i in keep], self.layers)
            P[keep] = self._probabilities(X, [whole[i] for i in keep], [prepared[i] for i in keep])
        return self._dicts(P)

    def _probabilities(self, X: np.ndarray, texts: list[str], parts: list[list[str]] | None = None) -> np.ndarray:
        """Head probabilities (N, K) from layer embeddings ``X`` of the prepared ``texts`` (cues, profanity term);
        ``parts``: the texts' prepared pieces, if any (:func:`guardrails.toxicity.features.cue_features`)."""
        X = head_inputs(X, texts, self.cues, parts)
        P = 1.0 / (1.0 + np.exp(-(X @ self.W.T + self.b)))
        if self._pc is not None:
            k = self.categories.index("toxicity")
            P[:, k] = (1 - self.pc_weight) * P[:, k] + self.pc_weight * self._pc(texts)
        return P

    def _dicts(self, P: np.ndarray) -> list[dict[str, float]]:
        return [{c: float(v) for c, v in zip(self.categories, row, strict=True)} for row in P]
