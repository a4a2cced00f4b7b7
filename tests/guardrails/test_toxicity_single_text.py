"""The int8 encoder's one-text graph (guardrails/toxicity/single_text.py) gives the padded-batch graph's numbers.

Both graphs are built from the default model's tuned layers and quantised the same way; on real answer sentences
and prompts the one-text graph's int8 embeddings equal the padded-batch graph's bit for bit, and its float32
ones agree to rounding.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from guardrails.toxicity.backends import WEIGHTS, MiniLMHead
from guardrails.toxicity.onnx_build import _quantize, built_file
from guardrails.toxicity.onnx_encoder import model_file
from guardrails.toxicity.sentences import split_sentences

TEXTS = [
    "Lighthouses were built along dangerous coasts to warn ships away from rocks.",
    "I would never say that immigrants are scum, and neither should you.",
    "ok",
    "The Fresnel lens bent the light into a narrow beam that could reach the horizon, and keepers trimmed the "
    "wicks every few hours through the night so that the flame never smoked the glass.",
]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, ids):
    x = np.asarray([ids], dtype=np.int64)
    feeds = {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)}
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


@pytest.fixture(scope="module")
def head():
    return MiniLMHead(WEIGHTS)


def test_one_text_graph_is_bit_identical_after_int8(head, tmp_path):
    encoder, tuned = head.encoder, head.tuned
    padded = model_file(encoder.depth, int8=False, tuned=tuned)
    padded_int8 = tmp_path / "padded_int8.onnx"
    _quantize(padded, padded_int8)
    single = model_file(encoder.depth, int8=True, tuned=tuned)
    assert "single" in single.name
    a, b = _session(padded_int8), _session(single)
    assert [i.name for i in b.get_inputs()] == ["input_ids"]
    answer = " ".join(TEXTS)
    units = TEXTS + [answer[s:e] for s, e in split_sentences(answer)]
    for ids in encoder.token_ids(units):
        assert np.array_equal(_run(a, ids), _run(b, ids))


def test_one_text_graph_float32_matches_transformers_graph(head):
    encoder, tuned = head.encoder, head.tuned
    padded = model_file(encoder.depth, int8=False, tuned=tuned)
    single = built_file(
        padded.with_name(padded.stem + "_single_f32.onnx"),
        False,
        "guardrails.toxicity.onnx_encoder:_export",
        str(encoder.depth),
        str(tuned),
        "1",
    )
    a, b = _session(padded), _session(single)
    for ids in encoder.token_ids(TEXTS):
        np.testing.assert_allclose(_run(a, ids), _run(b, ids), atol=2e-5)
