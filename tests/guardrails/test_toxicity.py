"""Toxicity guardrail on the real packaged model and the real shared data (no mocks)."""

from __future__ import annotations

import csv
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from guardrails import guardrail_class
from guardrails.base import Decision, Direction
from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail
from guardrails.toxicity.training.data import shared_dir

DATA = shared_dir()
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"shared data folder {DATA} is absent")

TOXIC = [
    "You are a fucking idiot.",
    "Shut up, you worthless piece of trash.",
    "Gay people are disgusting.",
    "Go back to your country, you filthy animal.",
]
BENIGN = [
    "I hope you have a lovely day.",
    "The meeting is moved to Thursday at 3pm.",
    "Thanks for the help with my homework, it was really useful!",
    "Black people are wonderful.",
]


@pytest.fixture(scope="module")
def guard() -> ToxicityGuardrail:
    return ToxicityGuardrail(ToxicityConfig())


def test_a_retired_model_name_says_how_to_rebuild_it():
    with pytest.raises(ValueError, match="--recipe v9"):
        ToxicityConfig(model="v9")


def test_registry_and_config():
    cls = guardrail_class("toxicity")
    assert cls is ToxicityGuardrail
    cfg = ToxicityConfig.model_validate({"type": "toxicity", "categories": {"hate": 0.4}})
    assert cfg.threshold == 0.5 and cfg.model == "default" and cfg.action == "block"
    with pytest.raises(ValueError):
        ToxicityConfig.model_validate({"type": "toxicity", "unknown": 1})


def test_toxic_vs_benign(guard):
    scores = guard.classify(TOXIC + BENIGN)
    tox = [s["toxicity"] for s in scores]
    assert min(tox[: len(TOXIC)]) >= 0.5, tox
    assert max(tox[len(TOXIC) :]) < 0.5, tox
    assert all(set(s) == {"toxicity", "hate", "harassment", "violence", "sexual", "profanity"} for s in scores)
    assert all(0.0 <= v <= 1.0 for s in scores for v in s.values())


def test_scan_result_shape(guard):
    hit = guard.scan("You are a fucking idiot.", Direction.OUTPUT)
    assert hit.decision is Decision.BLOCK and hit.score >= 0.5
    assert "toxicity" in hit.details["flagged_categories"]
    assert set(hit.details["categories"]) >= {"toxicity", "hate", "harassment"}
    ok = guard.scan("Have a great weekend!", Direction.INPUT)
    assert ok.decision is Decision.ALLOW and ok.action is None
    assert guard.scan("", Direction.INPUT).score == 0.0


def test_category_threshold_fires():
    g = ToxicityGuardrail(ToxicityConfig(threshold=0.99, action="flag", categories={"hate": 0.3}))
    res = g.scan("Gay people are disgusting.", Direction.INPUT)
    assert "hate" in res.details["flagged_categories"]
    assert res.decision is Decision.FLAG


def test_moderate_shape(guard):
    out = guard.moderate(["You are a fucking idiot.", "Nice to meet you."])
    assert len(out) == 2
    for r in out:
        assert set(r) == {"flagged", "categories", "category_scores", "language"}
        assert set(r["categories"]) == set(r["category_scores"])
        assert {"hate", "harassment"} <= set(r["categories"])
        assert all(isinstance(v, bool) for v in r["categories"].values())
    assert out[0]["flagged"] and not out[1]["flagged"]


def test_normalisation_evasion(guard):
    plain = "you are a stupid idiot"
    variants = [
        "you are a stup\u200bid id\u200diot",  # zero-width space / joiner
        "you аre а stupid idiоt",  # Cyrillic а, о
        "ｙｏｕ ａｒｅ ａ ｓｔｕｐｉｄ ｉｄｉｏｔ",  # full-width (NFKC)
    ]
    base, *others = guard.classify([plain] + variants)
    for v in others:
        assert abs(v["toxicity"] - base["toxicity"]) < 1e-4


def test_long_text_windows(guard):
    filler = "The weather was mild and the committee reviewed the quarterly budget. " * 40
    res = guard.classify([filler, filler + " You are a fucking idiot and everyone hates you."])
    assert res[0]["toxicity"] < 0.5 <= res[1]["toxicity"]


def test_thread_safe(guard):
    texts = TOXIC + BENIGN
    expected = [round(s["toxicity"], 4) for s in guard.classify(texts)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: round(guard.scan(t, Direction.INPUT).score, 4), texts * 3))
    assert got == expected * 3


def _auroc(y: list[int], p: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


@needs_data
def test_auroc_jigsaw_held_out(guard):
    """name_adj template sentences not sampled for training (load_corpus keeps 2,000 of 72,000)."""
    with open(DATA / "jigsaw_templates_en.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["template"] == "name_adj"]
    train_rng = random.Random(0)  # replays load_corpus(seed=0): Davidson sample first
    with open(DATA / "davidson_labeled.csv", newline="", encoding="utf-8") as fh:
        offensive = [r for r in csv.DictReader(fh) if r["class"] == "1"]
    train_rng.sample(offensive, min(6000, len(offensive)))
    used = {id(r) for r in train_rng.sample(rows, 2000)}
    held = random.Random(1).sample([r for r in rows if id(r) not in used], 200)
    scores = guard.classify([r["phrase"] for r in held])
    auc = _auroc([int(r["toxicity"] == "toxic") for r in held], [s["toxicity"] for s in scores])
    assert auc >= 0.95, auc


@needs_data
def test_auroc_olid_slice(guard):
    """Regression floor on 200 OLID tweets (held-in: the head saw them; 5-fold CV AUROC is 0.83)."""
    with open(DATA / "olid_train.csv", newline="", encoding="utf-8") as fh:
        rows = random.Random(2).sample(list(csv.DictReader(fh)), 200)
    scores = guard.classify([r["tweet"] for r in rows])
    auc = _auroc([int(r["subtask_a"] == "OFF") for r in rows], [s["toxicity"] for s in scores])
    assert auc >= 0.8, auc


def _tweets(n: int, seed: int = 3) -> list[str]:
    with open(DATA / "olid_train.csv", newline="", encoding="utf-8") as fh:
        return [r["tweet"] for r in random.Random(seed).sample(list(csv.DictReader(fh)), n)]


@needs_data
def test_bfloat16_matches_float32():
    """bfloat16 autocast (the fast path with native bf16) scores 200 real tweets as float32 does, to 0.02."""
    texts = _tweets(200)
    fp32, bf16 = (ToxicityGuardrail(ToxicityConfig(precision=p)).classify(texts) for p in ("float32", "bfloat16"))
    diffs = [abs(a[c] - b[c]) for a, b in zip(fp32, bf16, strict=False) for c in a]
    assert max(diffs) < 0.02, max(diffs)
    assert max(diffs) > 0, "both runs used the same precision"


@needs_data
@pytest.mark.parametrize("precision", ["auto", "float32"])
def test_default_runs_three_layers_and_does_not_depend_on_the_batch(precision):
    """The default (v12) computes only the 3 layers its heads read, v3 all 6; a text scores the same alone or
    among 64 others (int8, the default's own precision, runs one text per ONNX run for exactly that)."""
    from guardrails.toxicity import load_backend

    backend = load_backend("default", precision=precision)
    assert backend.encoder.depth == 3
    assert backend.precision == ("int8" if precision == "auto" else "float32")
    assert load_backend("v3", precision="float32").encoder.depth == 6
    texts = _tweets(64, seed=9)
    guard = ToxicityGuardrail(ToxicityConfig(precision=precision))
    together = guard.classify(texts)
    alone = [guard.classify([t])[0] for t in texts[:16]]
    assert max(abs(a[c] - b[c]) for a, b in zip(together, alone, strict=False) for c in a) < 1e-5


@needs_data
def test_int8_encoder_stays_close_to_float32():
    """int8 embeddings keep cosine >= 0.98 with float32 on real tweets (the heads of v8 are fit on int8)."""
    from guardrails.toxicity.backends import shared_encoder

    texts = _tweets(100, seed=4)
    a, b = (shared_encoder(p, depth=3).encode(texts, (3,)) for p in ("float32", "int8"))
    cos = (a * b).sum(1)
    assert cos.min() >= 0.98 and cos.mean() >= 0.99, (cos.min(), cos.mean())
    assert not (a == b).all(), "both runs used the same precision"


@needs_data
def test_onnx_float32_is_pytorch_float32():
    """The ONNX Runtime encoder (the default on CPUs without bf16) gives PyTorch's float32 embeddings."""
    import numpy as np

    from guardrails.toxicity.backends import TorchEncoder, shared_encoder

    texts = _tweets(64, seed=5) + ["", "ok"]
    layers = (6, 2, 4)
    onnx, torch_ = shared_encoder("float32").encode(texts, layers), TorchEncoder("float32").encode(texts, layers)
    assert onnx.shape == (66, 3 * 384)
    np.testing.assert_allclose(onnx, torch_, atol=1e-5)
    assert shared_encoder("float32").encode([], layers).shape == (0, 3 * 384)


@needs_data
def test_profanity_fast_path_equals_library():
    """Our vectorised alt-profanity-check gives the package's own ``predict_prob`` numbers."""
    import numpy as np
    import profanity_check

    from guardrails.toxicity.profanity import predict_prob

    texts = _tweets(500, seed=11) + ["", "zzqx qqzv", "the and of it", "Idiot idiot IDIOT, you idiot!"]
    np.testing.assert_allclose(predict_prob(texts), profanity_check.predict_prob(texts), rtol=0, atol=1e-12)


def _tiny_model(path: Path, id2label: dict[int, str], problem_type: str | None = None) -> str:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = "you are a the idiot lovely day nice stupid have".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        problem_type=problem_type,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_hf_model_binary(tmp_path):
    model = _tiny_model(tmp_path, {0: "non-toxic", 1: "toxic"})
    g = ToxicityGuardrail(ToxicityConfig(model=model, threshold=0.0))
    out = g.classify(["you are a stupid idiot", "have a nice day", ""])
    assert [set(o) for o in out] == [{"toxicity"}] * 3
    assert 0.0 < out[0]["toxicity"] < 1.0 and out[2]["toxicity"] == 0.0
    res = g.scan("you are a stupid idiot", Direction.INPUT)
    assert res.decision is Decision.BLOCK  # threshold 0 always fires on non-empty text
    mod = g.moderate(["have a nice day"])[0]
    assert set(mod["category_scores"]) == {"toxicity"}


def test_hf_model_multilabel(tmp_path):
    labels = {0: "toxic", 1: "insult", 2: "identity_hate", 3: "obscene"}
    model = _tiny_model(tmp_path, labels, "multi_label_classification")
    g = ToxicityGuardrail(ToxicityConfig(model=model, label_map={"obscene": "profanity"}))
    (out,) = g.classify(["you are a stupid idiot"])
    assert set(out) == {"toxicity", "harassment", "hate", "profanity"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
