"""Render the JSON of :mod:`guardrails.toxicity.training.evaluate` as the Markdown tables of docs/toxicity.md.

python -m guardrails.toxicity.training.report [docs/toxicity_eval.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LANGS = ("en", "de", "fr", "ar", "zh", "pt", "pl")
CATS = ("hate", "harassment", "violence", "profanity")


def _cell(d: dict[str, Any] | None, key: str = "macro_f1") -> str:
    return "–" if not d else f"{d[key]:.3f}"


def tables(ev: dict[str, Any]) -> str:
    """Markdown: the per-model table, the contrastive table, the presets table and identity FPR."""
    models = ev["models"]
    out = [
        "| model | "
        + " | ".join(LANGS)
        + " | "
        + " | ".join(f"{c} (en)" for c in CATS)
        + " | ag_news_long false-block | british_novels false-block | ag_news answers false-block"
        " | novel answers false-block |",
        "|---" * (1 + len(LANGS) + len(CATS) + 4) + "|",
    ]
    for name, r in models.items():
        langs = [_cell(r["language_macro_f1"].get(lg)) for lg in LANGS]
        cats = [_cell(r["category_macro_f1"].get(c)) for c in CATS]
        fb = [
            f"{r[k]['rate'] * 100:.2f} % (n={r[k]['n']})" if k in r else "–"
            for k in (
                "false_block_ag_news_long",
                "false_block_british_novels",
                "false_block_ag_news_long_chunks",
                "false_block_british_novels_chunks",
            )
        ]
        out.append(f"| {name} | " + " | ".join(langs + cats + fb) + " |")
    phen = sorted({p for r in models.values() for p in r["contrastive"]["per_phenomenon"]})
    out += [
        "",
        "| model (English route) | contrastive accuracy | " + " | ".join(phen) + " |",
        "|---" * (2 + len(phen)) + "|",
    ]
    for name, r in models.items():
        c = r["contrastive"]
        out.append(
            f"| {name} | {c['accuracy']:.3f} (n={c['n']}) | "
            + " | ".join(f"{c['per_phenomenon'].get(p, {}).get('accuracy', float('nan')):.2f}" for p in phen)
            + " |"
        )
    out += ["", "| model (dev-tuned threshold) | " + " | ".join(LANGS) + " |", "|---" * (1 + len(LANGS)) + "|"]
    for name, r in models.items():
        tuned = r.get("language_macro_f1_dev_tuned", {})
        out.append(f"| {name} | " + " | ".join(_cell(tuned.get(lg)) for lg in LANGS) + " |")
    zs = {n: r["zero_shot"] for n, r in models.items() if "zero_shot" in r}
    zl = sorted({lg for z in zs.values() for lg in z})
    if zs:
        out += ["", "| model | metric | " + " | ".join(zl) + " |", "|---" * (2 + len(zl)) + "|"]
        for name, z in zs.items():
            for metric in ("auroc", "macro_f1_at_0.5", "macro_f1_balanced"):
                cells = [f"{z[lg][metric]:.2f}" if lg in z else "–" for lg in zl]
                out.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    out += ["", "| model | identity FPR overall | worst term | worst FPR | sentences |", "|---|---|---|---|---|"]
    for name, r in models.items():
        i = r["identity_fpr"]
        out.append(f"| {name} | {i['overall']:.4f} | {i['worst_term']} | {i['worst_fpr']:.3f} | {i['n']} |")
    out += [
        "",
        "| model | preset | FPR budget (dev) | false-block on test prose | on answer-length prose | "
        "recall any toxic (test) | " + " | ".join(f"recall {c}" for c in (*CATS, "sexual")) + " |",
        "|---" * (6 + len(CATS) + 1) + "|",
    ]
    for name, r in models.items():
        for preset, p in r.get("presets", {}).items():
            rec = [
                f"{p['recall'][c]['recall']:.3f} (n={p['recall'][c]['n']})" if c in p["recall"] else "–"
                for c in (*CATS, "sexual")
            ]
            out.append(
                f"| {name} | {preset} | {p['fpr_budget'] * 100:g} % | {p['prose_false_block'] * 100:.2f} % "
                f"(n={p['prose_n']}) | "
                + (f"{p['answer_false_block'] * 100:.2f} % (n={p['answer_n']})" if "answer_n" in p else "–")
                + f" | {p['recall_any_toxic']:.3f} | "
                + " | ".join(rec)
                + " |"
            )
    return "\n".join(out)


def main() -> None:
    """Print the tables for the JSON file given (default ``docs/toxicity_eval.json``)."""
    default = Path(__file__).resolve().parents[3] / "docs" / "toxicity_eval.json"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    print(tables(json.loads(path.read_text("utf-8"))))


if __name__ == "__main__":
    main()
