"""Toxicity quality features on the real packaged models and small slices of the real shared data.

Covers: language detection and routing, per-category actions, the functional
example files, and the ``audit-fairness``, ``calibrate`` and ``compare-models``
commands (through Typer's runner, exit codes included).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from guardrails.base import Decision, Direction
from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail
from guardrails.toxicity.training.audit import (
    calibrate_threshold,
    compare,
    fairness_audit,
    read_texts,
    set_policy_threshold,
)
from guardrails.toxicity.training.cli import app
from guardrails.toxicity.training.data import shared_dir

DATA = shared_dir()
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "guardrails" / "toxicity" / "examples"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"shared data folder {DATA} is absent")
runner = CliRunner()


def _olid(n: int, label: str | None = None, seed: int = 0) -> list[dict[str, str]]:
    with open(DATA / "olid_train.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if label is None or r["subtask_a"] == label]
    return random.Random(seed).sample(rows, n)


def _write_csv(path: Path, rows: list[dict[str, str]], cols: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


# --- functional examples -----------------------------------------------------------------------------------------


def _tsv(name: str) -> list[dict[str, str]]:
    with open(EXAMPLES / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _train_texts() -> set[str]:
    """Every hand-written training sentence, of every recipe's example files."""
    from guardrails.toxicity.training.train import RECIPES

    names = {"functional_train.tsv"} | {n for spec in RECIPES.values() for n in spec.get("examples", ())}
    assert "functional_train_v5.tsv" in names
    return {r["text"].lower() for name in sorted(names) for r in _tsv(name)}


def test_functional_sets_disjoint():
    train = _train_texts()
    for name in ("functional_heldout.tsv", "sexual_heldout.tsv"):
        held = _tsv(name)
        assert len(held) >= 50
        assert not train & {r["text"].lower() for r in held}, name
    assert len(train) >= 500


@needs_data
def test_identity_heldout_templates_are_unseen_and_default_misses_fewer():
    """Our identity counterfactuals (50 terms x 14 templates) share no sentence with any training file, and
    the shipped default misses fewer of their toxic sentences than the first default (v1 FNR 0.29)."""
    path = EXAMPLES / "identity_heldout.csv"
    texts, labels = read_texts(path)
    assert len(texts) == 700 and sum(labels) == 300
    with open(DATA / "jigsaw_templates_en.csv", newline="", encoding="utf-8") as fh:
        jigsaw = {r["phrase"].lower() for r in csv.DictReader(fh)}
    assert not {t.lower() for t in texts} & (jigsaw | _train_texts())
    y = np.asarray(labels, dtype=bool)
    fnr = {
        m: float(
            (
                np.asarray(
                    [
                        s["toxicity"]
                        for s in ToxicityGuardrail(ToxicityConfig(model=m)).classify(
                            [t for t, toxic in zip(texts, y, strict=False) if toxic]
                        )
                    ]
                )
                < 0.5
            ).mean()
        )
        for m in ("default", "v1")
    }
    assert fnr["default"] <= fnr["v1"] - 0.15, fnr


def test_functional_heldout_beats_previous_defaults():
    """Each default beats the one before on the held-out functional tests (v5 > v3 > v2 > v1), negation included."""
    from sklearn.metrics import roc_auc_score

    held = _tsv("functional_heldout.tsv")
    y = np.asarray([int(r["toxicity"]) for r in held])
    texts = [r["text"] for r in held]
    neg = np.asarray([r["case"] == "negation" for r in held])
    auc, neg_acc = {}, {}
    for model in ("default", "v3", "v2", "v1"):
        p = np.asarray([s["toxicity"] for s in ToxicityGuardrail(ToxicityConfig(model=model)).classify(texts)])
        auc[model] = roc_auc_score(y, p)
        neg_acc[model] = float((p[neg] < 0.5).mean())
    assert auc["default"] >= auc["v3"] + 0.05 and auc["v3"] >= auc["v2"] + 0.04 and auc["v2"] >= auc["v1"] + 0.05, auc
    assert auc["default"] >= 0.85, auc
    assert neg_acc["default"] >= neg_acc["v2"] + 0.1, neg_acc


def test_sexual_category_heldout():
    """The sexual head (learnt from hand-written examples only) separates the held-out sexual rows; at the
    presets no benign row (sex education, medicine, romance) reaches the sexual threshold, and the strict preset
    catches a third of the sexual ones (measured 0.41; balanced, calibrated on answer-length novels, 0.06)."""
    from sklearn.metrics import roc_auc_score

    from guardrails.toxicity.config import preset_thresholds

    held = _tsv("sexual_heldout.tsv")
    scores = ToxicityGuardrail(ToxicityConfig()).classify([r["text"] for r in held])
    y = np.asarray([int(r["sexual"]) for r in held])
    p = np.asarray([s["sexual"] for s in scores])
    assert roc_auc_score(y, p) >= 0.9
    benign = p[np.asarray([r["case"] == "sexual_benign" for r in held])]
    for strictness in ("strict", "balanced"):
        assert (benign < preset_thresholds("default", strictness)["sexual"]).all(), strictness
    assert (p[y == 1] >= preset_thresholds("default", "strict")["sexual"]).mean() >= 0.33


def test_cue_features():
    from guardrails.toxicity.features import cue_features

    texts = [
        "I don’t hate them.",
        "He said “go home”.",
        "Nobody here is wrong.",
        "They are vermin.",
        "They are nothing but vermin.",
        "They are no better than rats.",
        "Not only rude but cruel.",
    ]
    assert cue_features(texts).tolist() == [[1, 0], [0, 1], [1, 0], [0, 0], [1, 0], [1, 0], [1, 0]]
    assert cue_features(texts, version=2).tolist() == [[1, 0], [0, 1], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0]]
    with pytest.raises(ValueError, match="cue version"):
        cue_features(texts, version=3)


# --- language and categories -------------------------------------------------------------------------------------


def test_language_detection_and_unsupported():
    block = ToxicityGuardrail(ToxicityConfig(on_unsupported_language="block", threshold=0.99))
    res = block.scan("Das Wetter ist heute sehr schön und wir gehen spazieren.", Direction.INPUT)
    assert res.details["language"]["code"] == "de" and res.details["language"]["route"] == "unsupported"
    assert res.details["unsupported_language"] and res.decision is Decision.BLOCK
    en = block.scan("I hope you have a lovely day.", Direction.INPUT)
    assert en.details["language"]["code"] == "en" and en.decision is Decision.ALLOW
    short = block.scan("lol ok", Direction.INPUT)  # too short to tell: stays with the English model
    assert short.details["language"]["code"] == "und" and short.decision is Decision.ALLOW
    allow = ToxicityGuardrail(ToxicityConfig(on_unsupported_language="allow", threshold=0.99))
    res = allow.scan("Das Wetter ist heute sehr schön und wir gehen spazieren.", Direction.INPUT)
    assert res.decision is Decision.ALLOW and res.details["unsupported_language"]
    flag = ToxicityGuardrail(ToxicityConfig(supported_languages=["en", "de"], threshold=0.99))
    res = flag.scan("Das Wetter ist heute sehr schön und wir gehen spazieren.", Direction.INPUT)
    assert res.details["language"]["route"] == "default" and res.decision is Decision.ALLOW
    mod = block.moderate(["Das Wetter ist heute sehr schön und wir gehen spazieren."])[0]
    assert mod["flagged"] and mod["language"]["code"] == "de"


def test_language_routing_to_hf_model(tmp_path):
    from tests.guardrails.test_toxicity import _tiny_model

    model = _tiny_model(tmp_path, {0: "non-toxic", 1: "toxic"})
    g = ToxicityGuardrail(ToxicityConfig(languages={"de": model}, threshold=0.99))
    res = g.scan("Du bist ein Idiot und alle hassen dich, geh weg.", Direction.INPUT)
    assert res.details["language"] == {**res.details["language"], "code": "de", "route": "de"}
    assert set(res.details["categories"]) == {"toxicity"}  # the tiny model's categories
    en = g.scan("You are a fucking idiot.", Direction.INPUT)
    assert "violence" in en.details["categories"]  # default model


def test_category_actions():
    g = ToxicityGuardrail(ToxicityConfig(threshold=0.99, action="flag", category_actions={"violence": "block"}))
    res = g.scan("I will find where you live and I will kill you.", Direction.INPUT)
    assert "violence" in res.details["flagged_categories"], res.details
    assert res.decision is Decision.BLOCK
    ok = g.scan("The detective novel starts with a murder in the library.", Direction.INPUT)
    assert ok.decision is Decision.ALLOW, ok.details


# --- metrics (exact values on hand-made scores) -----------------------------------------------------------------


def test_fairness_metrics_exact():
    texts = ["I am gay", "I am gay and awful", "I am straight", "I am straight and awful"] * 2
    labels = [0, 1, 0, 1] * 2
    scores = np.array([0.6, 0.9, 0.1, 0.8, 0.4, 0.7, 0.2, 0.9])
    rep = fairness_audit(texts, labels, scores, 0.5, min_count=1)
    gay, straight = rep["terms"]["gay"], rep["terms"]["straight"]
    assert gay["fpr"] == 0.5 and straight["fpr"] == 0.0
    assert gay["subgroup_auc"] == 1.0
    # BPSN for gay: gay negatives (0.6, 0.4) vs straight positives (0.8, 0.9): all ranked right
    assert gay["bpsn_auc"] == 1.0
    assert straight["bnsp_auc"] == 1.0
    assert rep["groups"]["sexual_orientation"]["n"] == 8


def test_calibrate_and_compare_exact(tmp_path):
    res = calibrate_threshold(np.linspace(0, 1, 101), 0.05, np.array([0.97, 0.5, 0.99]))
    assert res["benign_flagged_rate"] <= 0.05 and res["recall"] == pytest.approx(2 / 3, abs=1e-3)
    cmp = compare(["a", "b", "c", "d"], [1, 0, 1, 0], np.array([0.9, 0.1, 0.2, 0.1]), np.array([0.4, 0.1, 0.8, 0.7]))
    assert cmp["old_accuracy"] == 0.75 and cmp["new_accuracy"] == 0.5
    assert cmp["negative_flip_rate"] == 0.5 and cmp["positive_flip_rate"] == 0.25
    assert {f["text"] for f in cmp["negative_flips"]} == {"a", "d"}


def test_set_policy_threshold_keeps_yaml(tmp_path):
    pol = shutil.copy(ROOT / "policies" / "default.yaml", tmp_path / "p.yaml")
    before = Path(pol).read_text("utf-8")
    changed = set_policy_threshold(Path(pol), 0.8125)
    after = Path(pol).read_text("utf-8")
    assert len(changed) == 2
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=False) if a != b]
    assert len(diff) == 2 and all("threshold: 0.8125" in b for _, b in diff)
    from gateway.policy.schema import load_policy

    load_policy(Path(pol))  # still a valid policy


# --- commands on real data ---------------------------------------------------------------------------------------


@needs_data
def test_cli_audit_fairness(tmp_path):
    ok = runner.invoke(app, ["audit-fairness", "--per-term", "2", "--min-count", "2", "--max-gap", "1.0", "--json"])
    assert ok.exit_code == 0, ok.output
    rep = json.loads(ok.output)
    assert {"gender", "religion", "sexual_orientation"} <= set(rep["groups"])
    assert rep["gap"]["passed"] and 0 <= rep["gap"]["value"] <= 1
    # a user CSV of the same form, with an explicit identity column
    with open(DATA / "jigsaw_templates_en.csv", newline="", encoding="utf-8") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["template"] == "being_adj" and r["phrase"].split()[1] in ("gay", "straight", "muslim", "christian")
        ]
    rows = random.Random(0).sample(rows, 60)
    for r in rows:
        r["identity"] = r["phrase"].split()[1]
    user = _write_csv(tmp_path / "user.csv", rows, ["phrase", "toxicity", "identity"])
    bad = runner.invoke(
        app,
        [
            "audit-fairness",
            "--data",
            str(user),
            "--per-term",
            "0",
            "--level",
            "terms",
            "--metric",
            "fpr",
            "--max-gap",
            "0",
            "--threshold",
            "0.1",
        ],
    )
    assert bad.exit_code == 1, bad.output
    assert "FAIL" in bad.output


@needs_data
def test_cli_calibrate(tmp_path):
    benign = _write_csv(tmp_path / "benign.csv", _olid(100, "NOT"), ["tweet", "subtask_a"])
    toxic = _write_csv(tmp_path / "toxic.csv", _olid(40, "OFF", seed=1), ["tweet", "subtask_a"])
    pol = shutil.copy(ROOT / "policies" / "default.yaml", tmp_path / "p.yaml")
    res = runner.invoke(
        app,
        [
            "calibrate",
            "--benign",
            str(benign),
            "--target-fpr",
            "0.02",
            "--toxic",
            str(toxic),
            "--policy",
            str(pol),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["benign_n"] == 100 and out["benign_flagged_rate"] <= 0.02
    assert 0 <= out["recall"] <= 1 and out["toxic_n"] == 40
    from gateway.policy.schema import load_policy

    policy = load_policy(Path(pol)).policy
    thr = [e.threshold for d in ("input", "output") for e in getattr(policy, d) if e.type == "toxicity"]
    assert thr == [pytest.approx(out["threshold"], abs=1e-5)] * 2


@needs_data
def test_cli_compare_models(tmp_path):
    data = _write_csv(tmp_path / "olid.csv", _olid(80, seed=3), ["tweet", "subtask_a"])
    res = runner.invoke(app, ["compare-models", "v1", "default", "--data", str(data), "--json", "--show", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n"] == 80 and 0.5 <= out["old_accuracy"] <= 1 and 0.5 <= out["new_accuracy"] <= 1
    assert 0 <= out["negative_flip_rate"] <= 1 - out["new_accuracy"] + 1e-9
    assert len(out["negative_flips"]) == min(3, out["negative_flips_n"])
