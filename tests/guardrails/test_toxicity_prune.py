"""Structured feed-forward pruning of tuned MiniLM layers (training/tune_layers.prune_ffn) and loading the result.

On the packaged MiniLM: units whose output weights are zero contribute nothing, so pruning exactly them leaves
the layers' output unchanged, and they are the ones chosen; a pruned layer file loads into the base model
(``onnx_encoder.load_tuned``) with the narrower feed-forward blocks and computes what the pruned layers compute.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from guardrails.toxicity.model import load_base  # noqa: E402
from guardrails.toxicity.onnx_encoder import load_tuned  # noqa: E402
from guardrails.toxicity.training.tune_layers import FeatureModel, prune_ffn  # noqa: E402

TEXTS = ["Lighthouses warn ships away from rocks.", "I would never say that they are scum.", "ok then"]


@pytest.fixture(scope="module")
def base():
    model, tokenizer = load_base()
    model.encoder.layer = model.encoder.layer[:3]
    return model, tokenizer


def _inputs(model, tokenizer):
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model.embeddings(input_ids=enc["input_ids"])
    return h, enc["attention_mask"].float(), torch.zeros(len(TEXTS), 2)


def _feature_model(model):
    D = 2 * 384 + 2 * 384 + 2
    return FeatureModel(model, (0, 1, 2), (3, 2), np.zeros((2, D), np.float32), np.zeros(2, np.float32))


def test_pruning_dead_units_keeps_the_output_and_picks_them(base):
    model, tokenizer = base
    fm = _feature_model(model)
    dead = torch.arange(0, 1536, 4)  # 384 units with zero output weights: no contribution
    for block in fm.blocks:
        with torch.no_grad():
            block.output.dense.weight[:, dead] = 0.0
    args = _inputs(model, tokenizer)
    with torch.no_grad():
        before = fm.forward(*args)
    prune_ffn(fm, [args], 1536 - len(dead))
    for block in fm.blocks:
        assert block.intermediate.dense.out_features == 1152 and block.output.dense.in_features == 1152
        assert torch.all(block.output.dense.weight.abs().sum(0) > 0)  # no dead unit was kept
    with torch.no_grad():
        torch.testing.assert_close(fm.forward(*args), before, atol=1e-5, rtol=1e-5)


def test_pruned_layers_load_into_the_base_model(base, tmp_path):
    model, tokenizer = base
    fm = _feature_model(model)
    args = _inputs(model, tokenizer)
    prune_ffn(fm, [args], 512)
    path = fm.save(tmp_path / "layers.npz")
    fresh, _ = load_base()
    fresh.encoder.layer = fresh.encoder.layer[:3]
    load_tuned(fresh, path)
    assert all(layer.intermediate.dense.out_features == 512 for layer in fresh.encoder.layer)
    for mine, loaded in zip(fm.blocks, fresh.encoder.layer, strict=True):
        a = mine.intermediate.dense.weight.detach().half().float()  # the file is float16
        assert torch.equal(a, loaded.intermediate.dense.weight.detach())


def test_width_out_of_range_is_refused(base):
    model, tokenizer = base
    with pytest.raises(ValueError, match="ffn width must be 1-1536"):
        prune_ffn(_feature_model(model), [_inputs(model, tokenizer)], 2048)
