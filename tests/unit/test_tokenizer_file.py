"""The ``openai`` backend's tokenizer (:class:`gateway.backends.loading.TokenizerFile`) gives the transformers
fast tokenizer's ids and offsets, without importing torch."""

from __future__ import annotations

import subprocess
import sys

TEXTS = [
    "Hi",
    "Lighthouses guide ships safely along the coast at night.",
    "ça va? 日本語 \u00a0 tabs\tand\nlines",
    "  leading and trailing  ",
    "<|im_start|>user",
]


def test_same_ids_and_offsets_as_transformers(tmp_path):
    from transformers import AutoTokenizer

    from gateway.backends.loading import EMBEDDED_MODEL_NAME, load_tokenizer

    mine = load_tokenizer(None, tmp_path)
    reference = AutoTokenizer.from_pretrained(tmp_path / "models" / f"{EMBEDDED_MODEL_NAME}-tokenizer")
    for text in TEXTS:
        got = mine(text, add_special_tokens=False, return_offsets_mapping=True)
        want = reference(text, add_special_tokens=False, return_offsets_mapping=True)
        assert got["input_ids"] == want["input_ids"], text
        assert [tuple(o) for o in got["offset_mapping"]] == [tuple(o) for o in want["offset_mapping"]], text


def test_loading_it_does_not_import_torch(tmp_path):
    from gateway.backends.loading import load_tokenizer

    load_tokenizer(None, tmp_path)  # extract once (a child process may import torch)
    code = (
        "import sys; from pathlib import Path; from gateway.backends.loading import load_tokenizer; "
        f"t = load_tokenizer(None, Path({str(tmp_path)!r})); t('hello'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
