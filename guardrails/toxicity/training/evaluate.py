"""One-command evaluation of the toxicity models and calibration of the strictness presets.

    python -m guardrails.toxicity.training.evaluate [--models v8,multilingual-e5,...] [--calibrate]
    python -m guardrails.toxicity.training.evaluate --variant multilingual-e5-l8=/tmp/l8/heads.npz \
        --models multilingual-e5-l8 --shipped "" --calibrate --out /tmp/l8.json   # a trained, unshipped model

For each model: every row of :func:`guardrails.toxicity.training.splits.evaluation_rows` is scored the way the
guardrail scores traffic (sentence units, maximum per category, :func:`guardrails.toxicity.scorer.score_text`),
scores cached under ``$GREENLIST_HOME/cache/toxicity/eval_<model>.json``. ``shipped`` is the default policy's
routing (language detection; the languages in ``policies/default.yaml`` go to their model).

Calibration (``--calibrate``, on dev rows only): per model, the thresholds of each strictness preset from
benign dev prose of the British-novel dev books, paragraphs and answer-length texts, within the preset's budget
(:func:`guardrails.toxicity.training.calibration.calibrate`). Written to ``weights/presets.json``. (Non-toxic
social-media rows were tried as benign text too: their hate scores overlap the toxic rows' so much that the
thresholds reached 0.95-0.98 and recall fell to 1-2 %; see ``docs/toxicity.md``.)

Reported on test rows (and ``ag_news_long``, measure only) with the ``balanced`` preset: macro-F1 (the mean
of the toxic and non-toxic classes' F1) per language and per category (one category against the rest, rows
of known category), false-block rate on long benign prose (a text is blocked when an OpenAI category reaches
its threshold), per-identity FPR on the non-toxic Jigsaw templates, and the contrastive suite's accuracy per
phenomenon (:mod:`guardrails.toxicity.training.contrastive`). Each preset's FPR on benign prose and recall
per category go to the same JSON (``docs/toxicity.md`` is written from it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from guardrails.toxicity.config import OPENAI_CATEGORIES, PRESETS_FILE
from guardrails.toxicity.training.calibration import BLOCKING, calibrate, chunk_rows
from guardrails.toxicity.training.metrics import macro_f1, tuned_macro_f1
from guardrails.toxicity.training.splits import Row, data_root, evaluation_rows

CATEGORY_COLUMNS = (*BLOCKING, "profanity")
REPO = Path(__file__).resolve().parents[3]


def _policy_languages() -> dict[str, str]:
    import yaml

    policy = yaml.safe_load((REPO / "policies" / "default.yaml").read_text("utf-8"))
    for entry in policy.get("output", []):
        if entry.get("type") == "toxicity":
            return dict(entry.get("languages", {}))
    return {}


def register_variant(spec: str) -> str:
    """Make ``NAME=PATH`` (a weights ``.npz``) loadable as ``model: NAME`` in this process; returns ``NAME``.

    ``NAME`` keys the score cache and the presets like any model name; one starting with ``multilingual`` is
    scored on every language (:func:`english_only`).

    Raises:
        ValueError: ``spec`` is not ``NAME=PATH`` with an existing file.
    """
    from guardrails.toxicity.backends import NAMED_WEIGHTS

    name, _, path = spec.partition("=")
    if not name or not Path(path).is_file():
        raise ValueError(f"--variant wants NAME=PATH of a weights .npz, got {spec!r}")
    NAMED_WEIGHTS[name] = Path(path).resolve()
    return name


def guardrail(model: str) -> Any:
    """A guardrail scoring everything with ``model`` (no language routing, no cache).

    ``model`` may end in ``:<precision>`` (e.g. ``multilingual-e5:float32``): the encoder precision to run
    instead of the one the heads were fit on (the name, with the suffix, keys the score cache and the presets).
    """
    from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail

    name, _, precision = model.partition(":")
    return ToxicityGuardrail(
        ToxicityConfig(model=name, detect_language=False, cache_size=0, precision=precision or "auto")  # type: ignore[arg-type]
    )


def english_only(model: str) -> bool:
    """Whether ``model`` is an English MiniLM model (scored on English rows and prose only)."""
    return not model.startswith("multilingual")


def shipped_scores(rows: list[Row], english: str, scores: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Scores of the default policy's routing, composed from per-model scores (no model runs again).

    Each row's language is detected as the guardrail does; languages in ``policies/default.yaml`` take the
    scores of their model, ``en`` / ``und`` those of ``english``; others count as unsupported (flagged, so
    ``_model`` = ``unsupported`` and :func:`blocked` treats them as blocked).
    """
    from guardrails.toxicity.language import detect_language
    from guardrails.toxicity.text import prepare

    routes = _policy_languages()
    out = []
    for i, r in enumerate(rows):
        lang, _ = detect_language(prepare(r.text), 0.5)
        model = routes.get(lang, english if lang in ("en", "und") else "unsupported")
        out.append({**scores[model][i], "_model": model} if model in scores else {"_model": "unsupported"})
    return out


def score_texts(model: str, texts: list[str], log_every: int = 500) -> list[dict[str, float]]:
    """Text-level category scores of ``texts`` under ``model``, through a JSON cache of earlier runs."""
    from greenlist.home import cache_dir

    path = cache_dir("toxicity") / f"eval_{model}.json"
    store: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    todo = [i for i, k in enumerate(keys) if k not in store]
    if todo:
        g = guardrail(model)
        t0 = time.perf_counter()
        for n, i in enumerate(todo):
            ts, lang = g.score(texts[i])
            store[keys[i]] = {
                **{c: round(v, 5) for c, v in ts.scores.items()},
                "_model": g.config.languages.get(lang["route"], g.config.model),
            }
            if log_every and n % log_every == log_every - 1:
                print(f"{model}: {n + 1}/{len(todo)} in {time.perf_counter() - t0:.0f} s", flush=True)
                path.write_text(json.dumps(store))
        path.write_text(json.dumps(store))
    return [store[k] for k in keys]


def blocked(scores: dict[str, Any], th: dict[str, Any], unsupported: bool = True) -> bool:
    """Whether an OpenAI category reaches its threshold (what the default policy blocks).

    ``th`` is ``{category: threshold}``, or ``{model: {category: threshold}}`` for routed scores (each score
    row names its ``_model``). ``unsupported``: what a row in a language no model covers counts as; the
    default policy flags such a text (``on_unsupported_language: flag``): positive for detection metrics
    (``True``), not a block for false-block rates (``False``).
    """
    if scores.get("_model") == "unsupported":
        return unsupported
    th = th.get(str(scores.get("_model")), th) if isinstance(next(iter(th.values()), None), dict) else th
    return any(scores.get(c, 0.0) >= th.get(c, 1.01) for c in OPENAI_CATEGORIES)


def false_block_rate(scores: list[dict[str, Any]], idx: list[int], th: dict[str, Any]) -> float:
    """Share of the benign texts ``idx`` of ``scores`` that :func:`blocked` blocks at ``th`` (a text in a language no
    model covers is flagged, not blocked), rounded to 4 places."""
    return round(float(np.mean([blocked(scores[i], th, unsupported=False) for i in idx])), 4)


def report(
    model: str,
    rows: list[Row],
    scores: list[dict[str, float]],
    th: dict[str, float],
    chunks: list[Row],
    chunk_scores: list[dict[str, float]],
) -> dict[str, Any]:
    """Test-set metrics of one model at thresholds ``th`` (see the module docstring), with the false-block rates
    on benign paragraphs (``rows``) and on answer-length texts (``chunks``, their test and measure splits)."""
    res: dict[str, Any] = {"model": model, "thresholds": th, "language_macro_f1": {}, "category_macro_f1": {}}
    test = [i for i, r in enumerate(rows) if r.split == "test" and r.dataset != "british_novels"]
    by_lang: dict[str, list[int]] = {}
    for i in test:
        by_lang.setdefault(rows[i].language, []).append(i)
    for lang, idx in sorted(by_lang.items()):
        y = np.asarray([rows[i].label for i in idx])
        p = np.asarray([blocked(scores[i], th) for i in idx], dtype=int)
        res["language_macro_f1"][lang] = {"macro_f1": round(macro_f1(y, p), 3), "n": len(idx)}
    for lang in sorted(by_lang):
        tuned = tuned_macro_f1(rows, scores, lang)
        if tuned:
            res.setdefault("language_macro_f1_dev_tuned", {})[lang] = tuned
    for c in CATEGORY_COLUMNS:
        idx = [i for i in test if rows[i].category not in ("unknown",) and rows[i].language == "en"]
        y = np.asarray([rows[i].category == c for i in idx], dtype=int)
        if y.sum() >= 10:
            t = th.get("default", th) if isinstance(th.get("default"), dict) else th
            p = np.asarray([scores[i].get(c, 0.0) >= t.get(c, 0.5) for i in idx], dtype=int)
            res["category_macro_f1"][c] = {"macro_f1": round(macro_f1(y, p), 3), "positives": int(y.sum())}
    for name, split in (("ag_news_long", "measure"), ("british_novels", "test")):
        idx = [i for i, r in enumerate(rows) if r.dataset == name and r.split == split]
        res[f"false_block_{name}"] = {"rate": false_block_rate(scores, idx, th), "n": len(idx)}
    for name in ("ag_news_long_chunks", "british_novels_chunks"):
        idx = [i for i, r in enumerate(chunks) if r.dataset == name and r.split != "dev"]
        res[f"false_block_{name}"] = {"rate": false_block_rate(chunk_scores, idx, th), "n": len(idx)}
    return res


def preset_table(
    rows: list[Row],
    scores: list[dict[str, float]],
    presets: dict[str, Any],
    chunks: list[Row],
    chunk_scores: list[dict[str, float]],
) -> dict[str, Any]:
    """Per preset: false-block rate on test benign prose (paragraphs and answer-length chunks) and recall per
    category on the toxic test rows."""
    out = {}
    answers = [i for i, r in enumerate(chunks) if r.split != "dev"]
    for name, p in presets.items():
        th = p["thresholds"]
        prose = [
            i
            for i, r in enumerate(rows)
            if (r.dataset, r.split) in (("british_novels", "test"), ("ag_news_long", "measure"))
        ]
        rec = {}
        for c in CATEGORY_COLUMNS:
            idx = [i for i, r in enumerate(rows) if r.split == "test" and r.label == 1 and r.category == c]
            if idx:
                rec[c] = {
                    "recall": round(float(np.mean([scores[i].get(c, 0.0) >= th[c] for i in idx])), 3),
                    "n": len(idx),
                }
        toxic = [i for i, r in enumerate(rows) if r.split == "test" and r.label == 1]
        out[name] = {
            "fpr_budget": p["fpr_budget"],
            "prose_false_block": false_block_rate(scores, prose, th),
            "prose_n": len(prose),
            "answer_false_block": false_block_rate(chunk_scores, answers, th),
            "answer_n": len(answers),
            "recall": rec,
            "recall_any_toxic": round(float(np.mean([blocked(scores[i], th) for i in toxic])), 3),
        }
    return out


def identity_fpr(model: str, th: dict[str, float], per_term_n: int = 40) -> dict[str, Any]:
    """Per-identity false-positive rate (blocked) on non-toxic Jigsaw templates (Dixon et al. 2018).

    A seeded sample of ``per_term_n`` non-toxic template sentences per identity term is scored.
    """
    import csv

    from guardrails.toxicity.training.audit import identity_term
    from guardrails.toxicity.training.train import identity_terms

    terms = identity_terms()
    with open(data_root() / "toxicity" / "jigsaw_templates_en.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["toxicity"] == "nontoxic"]
    from guardrails.toxicity.training.splits import _bucket

    per_term: dict[str, list[dict[str, str]]] = {}
    for r in sorted(rows, key=lambda r: _bucket(r["phrase"])):
        t = identity_term(r["phrase"], terms)
        if t and len(per_term.setdefault(t, [])) < per_term_n:
            per_term[t].append(r)
    rows = [r for v in per_term.values() for r in v]
    scores = score_texts(model, [r["phrase"] for r in rows], log_every=5000)
    per: dict[str, list[bool]] = {}
    for r, s in zip(rows, scores, strict=True):
        per.setdefault(identity_term(r["phrase"], terms) or "", []).append(blocked(s, th))
    fpr = {t: round(float(np.mean(v)), 3) for t, v in sorted(per.items())}
    worst = max(fpr, key=fpr.__getitem__)
    return {
        "overall": round(float(np.mean([x for v in per.values() for x in v])), 4),
        "worst_term": worst,
        "worst_fpr": fpr[worst],
        "per_term": fpr,
        "n": len(rows),
    }


def zero_shot(model: str, th: dict[str, float]) -> dict[str, Any]:
    """Per language of ``examples/multilingual_test.tsv`` (60 team-written sentences each, 13 languages; es, it,
    nl, hi have no training data): AUROC of the highest OpenAI-category score and macro-F1 at 0.5 and at ``th``.
    """
    from sklearn.metrics import roc_auc_score

    from guardrails.toxicity.training.multilingual import read_test_set

    rows = read_test_set()
    scores = score_texts(model, [r["text"] for r in rows], log_every=0)
    out: dict[str, Any] = {}
    for lang in sorted({r["lang"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
        y = np.asarray([int(rows[i]["toxicity"]) for i in idx])
        s = np.asarray([max(scores[i].get(c, 0.0) for c in OPENAI_CATEGORIES) for i in idx])
        out[lang] = {
            "auroc": round(float(roc_auc_score(y, s)), 3),
            "macro_f1_at_0.5": round(macro_f1(y, (s >= 0.5).astype(int)), 3),
            "macro_f1_balanced": round(macro_f1(y, np.asarray([blocked(scores[i], th) for i in idx], dtype=int)), 3),
            "n": len(idx),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Score, calibrate (``--calibrate``) and report; prints and writes ``--out`` JSON."""
    from guardrails.toxicity.config import preset_thresholds
    from guardrails.toxicity.training.contrastive import evaluate_contrastive

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--models",
        default="v5,v6,v7,v8,v12,multilingual,multilingual-v2,multilingual-e5-heads,multilingual-e5",
        help="comma-separated model names (v9's weights left the repository: rebuild them with train --recipe v9 "
        "--out DIR, then add v9 here with --variant v9=DIR/minilm_head.npz)",
    )
    ap.add_argument(
        "--shipped",
        default=None,
        help="ENGLISH,MULTILINGUAL: the models the default policy routes to (composed, not re-run); "
        "default: train.DEFAULT_RECIPE,multilingual-e5 (the languages policies/default.yaml routes)",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=PATH: score the weights file PATH as model NAME (repeatable; see register_variant)",
    )
    ap.add_argument("--per-group", type=int, default=300)
    ap.add_argument("--prose", type=int, default=800, help="British-novel / ag_news paragraphs per split")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "toxicity_eval.json")
    args = ap.parse_args(argv)
    for spec in args.variant:
        register_variant(spec)
    if args.shipped is None:
        from guardrails.toxicity.training.train import DEFAULT_RECIPE

        args.shipped = f"{DEFAULT_RECIPE},multilingual-e5"
    rows = evaluation_rows(args.per_group, args.prose)
    chunks = chunk_rows(args.prose)
    models = args.models.split(",")
    scores: dict[str, list[dict[str, Any]]] = {}
    chunk_scores: dict[str, list[dict[str, Any]]] = {}
    for m in models:
        keep = [i for i, r in enumerate(rows) if not english_only(m) or r.language == "en"]
        got = dict(zip(keep, score_texts(m, [rows[i].text for i in keep]), strict=True))
        scores[m] = [got.get(i, {"_model": "not_scored"}) for i in range(len(rows))]
        chunk_scores[m] = score_texts(m, [r.text for r in chunks])
    if args.shipped:
        english, multi = args.shipped.split(",")
        scores["shipped"] = shipped_scores(rows, english, {english: scores[english], multi: scores[multi]})
        chunk_scores["shipped"] = chunk_scores[english]  # the chunks are English
        models.append("shipped")
    presets = json.loads(PRESETS_FILE.read_text()) if PRESETS_FILE.exists() else {}
    if args.calibrate:
        for m in models:
            if m != "shipped":
                presets[m] = calibrate(rows, scores[m], chunks, chunk_scores[m])
        english = args.shipped.split(",")[0]
        if english in presets:  # `model: default` is the shipped English model
            presets["default"] = {**presets[english], "calibrated_as": english}
        PRESETS_FILE.write_text(json.dumps(presets, indent=1) + "\n")
        from guardrails.toxicity.config import _presets_file

        _presets_file.cache_clear()
    out: dict[str, Any] = {"rows": len(rows), "models": {}}
    for m in models:
        # a `name:precision` spec without presets of its own is measured at the presets of `name`
        th: dict[str, Any] = (
            preset_thresholds(m, "balanced")
            or preset_thresholds(m.partition(":")[0], "balanced")
            or {c: 0.5 for c in BLOCKING}
        )
        if m == "shipped":
            th = {n: preset_thresholds(n, "balanced") or {c: 0.5 for c in BLOCKING} for n in args.shipped.split(",")}
        res = report(m, rows, scores[m], th, chunks, chunk_scores[m])
        en_model, en_th = (args.shipped.split(",")[0], th[args.shipped.split(",")[0]]) if m == "shipped" else (m, th)
        res["identity_fpr"] = identity_fpr(en_model, en_th)
        res["contrastive"] = evaluate_contrastive(guardrail(en_model), en_th)
        if m in presets:
            res["presets"] = preset_table(rows, scores[m], presets[m], chunks, chunk_scores[m])
        if not english_only(m) and m != "shipped":
            res["zero_shot"] = zero_shot(m, th)
        out["models"][m] = res
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(
        json.dumps({m: {k: v for k, v in r.items() if k != "identity_fpr"} for m, r in out["models"].items()}, indent=1)
    )
    return out


if __name__ == "__main__":
    main()
