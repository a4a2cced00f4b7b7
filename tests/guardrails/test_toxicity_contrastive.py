"""The contrastive suite is well-formed and disjoint from every training file; the shipped model passes it."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from guardrails.toxicity.training.contrastive import FOLDER, suite
from guardrails.toxicity.training.finetune import EXAMPLES, read_functional
from guardrails.toxicity.training.multilingual_v2 import EXAMPLE_FILES
from guardrails.toxicity.training.train import RECIPES


def _norm(t: str) -> str:
    return re.sub(r"[^\w ]", "", t.lower()).strip()


def test_suite_shape():
    rows = suite()
    assert 250 <= len(rows) <= 400
    counts = Counter(r["phenomenon"] for r in rows)
    assert {
        "negated_hate",
        "counter_speech",
        "reclaimed_slur",
        "profanity_no_target",
        "identity_positive",
        "insult_individual",
        "threat",
    } <= set(counts)
    assert all(n >= 10 for n in counts.values())
    assert (FOLDER / "README.md").exists()


def test_suite_disjoint_from_training_examples():
    files = {f for spec in RECIPES.values() for f in spec.get("examples", ())} | set(EXAMPLE_FILES)
    train = {_norm(r["text"]) for f in files for r in read_functional(EXAMPLES / f)}
    overlap = [r["text"] for r in suite() if _norm(r["text"]) in train]
    assert not overlap, overlap


def test_suite_disjoint_from_extra_train_rows():
    from guardrails.toxicity.training.splits import data_root, load_extra

    if not (data_root() / "toxicity_extra").exists():
        pytest.skip("shared data absent")
    train = {_norm(r.text) for r in load_extra(("hatemoji_build", "mlma")) if r.split == "train"}
    assert not [r["text"] for r in suite() if _norm(r["text"]) in train]
