"""Building the ONNX files the toxicity encoders run: ``torch.onnx.export`` in a child process, then int8 dynamic
quantisation (:func:`built_file`), cached under ``$GREENLIST_HOME/cache/toxicity/``.

Shared by the MiniLM (:mod:`guardrails.toxicity.onnx_encoder`) and multilingual e5
(:mod:`guardrails.toxicity.multilingual_e5`) encoders; what each exports is its own ``exporter`` function.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def export_module(module: Any, example: dict[str, Any], path: Path) -> None:
    """``torch.onnx.export`` of ``module`` (inputs named as ``example``'s keys, batch and token axes dynamic,
    one output ``embeddings`` with a dynamic batch axis) to ``path``, through a temporary file.

    Args:
        module: A ``torch.nn.Module`` in eval mode whose ``forward`` takes ``example``'s tensors in order.
        example: ``{input name: example tensor (batch, tokens, ...)}``.
        path: The ``.onnx`` to write.
    """
    import warnings

    import torch

    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(example.values()),
            str(tmp),
            input_names=list(example),
            output_names=["embeddings"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={**{k: {0: "batch", 1: "tokens"} for k in example}, "embeddings": {0: "batch"}},
        )
    tmp.replace(path)


def _quantize(src: Path, path: Path) -> None:
    """Write ``src`` with int8 weights (per output channel) and dynamically quantised activations to ``path``.

    Runs in :func:`model_file`'s child process, whose ``TMPDIR`` is the cache folder (the quantiser's
    intermediate copies of the model stay there, not in /tmp)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic logs a "consider pre-processing" advice
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    tmp.replace(path)


def built_file(path: Path, int8: bool, exporter: str, *args: str) -> Path:
    """``path`` (float32 ONNX) or its ``_int8`` sibling, built first in a child process when missing.

    The child imports torch (~300 MiB that would stay in a gateway that never uses it) and the quantiser onnx,
    and its ``TMPDIR`` is the cache folder. Shared by the MiniLM (:func:`guardrails.toxicity.onnx_encoder.model_file`) and the multilingual e5
    (:func:`guardrails.toxicity.multilingual_e5.model_file`) encoders.

    Args:
        path: The float32 file to export when missing.
        int8: Also quantise it (:func:`_quantize`) and return the quantised file.
        exporter: ``"module:function"`` called in the child as ``function(path, *args)`` (strings; ``""`` for
            none) to write the float32 file.
        args: Its further arguments.

    Returns:
        The file to load.

    Raises:
        subprocess.CalledProcessError: the export or the quantisation failed.
    """
    quantized = path.with_name(path.stem + "_int8.onnx")
    if not path.exists() or (int8 and not quantized.exists()):
        code = "import sys; from guardrails.toxicity.onnx_build import _build; _build(*sys.argv[1:])"
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
            "TMPDIR": str(path.parent),
        }
        argv = [str(path), str(quantized) if int8 else "", exporter, *args]
        subprocess.run([sys.executable, "-c", code, *argv], check=True, env=env, timeout=900)
    return quantized if int8 else path


def _build(path: str, quantized: str, exporter: str, *args: str) -> None:
    """Child-process entry of :func:`built_file`: export ``path`` with ``exporter`` if missing, then quantise it
    to ``quantized`` (when given and missing). Arguments are strings (``sys.argv``); ``""`` means none."""
    import importlib

    if not Path(path).exists():
        module, func = exporter.split(":")
        getattr(importlib.import_module(module), func)(Path(path), *args)
    if quantized and not Path(quantized).exists():
        _quantize(Path(path), Path(quantized))
