"""``greenlist`` commands of the toxicity guardrail: audit-fairness, calibrate, compare-models, train-toxicity.

Mount in ``gateway/cli.py``::

    from guardrails.toxicity.training.cli import app as toxicity_app
    for cmd in toxicity_app.registered_commands:
        app.registered_commands.append(cmd)

(or ``app.add_typer(toxicity_app, name="toxicity")`` for ``greenlist toxicity ...``).
Standalone: ``python -m guardrails.toxicity.training.cli --help``.

Exit codes: 0 ok; 1 the fairness gap exceeds ``--max-gap``; 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from guardrails.toxicity.training.audit import (
    calibrate_threshold,
    compare,
    fairness_audit,
    gap,
    read_texts,
    set_policy_threshold,
)

app = typer.Typer(
    help="Toxicity guardrail: fairness audit, calibration, model comparison, training.",
    no_args_is_help=True,
    add_completion=False,
)


def _policy_entry(policy: Path | None) -> dict[str, Any]:
    """First toxicity entry (input before output) of a policy file, or ``{}``."""
    if policy is None:
        return {}
    import yaml

    data = yaml.safe_load(policy.read_text("utf-8")) or {}
    for d in ("input", "output"):
        for e in data.get(d) or []:
            if isinstance(e, dict) and e.get("type") == "toxicity":
                return dict(e)
    return {}


def guardrail_for(model: str = "default", policy: Path | None = None) -> Any:
    """A :class:`~guardrails.toxicity.ToxicityGuardrail` for ``model`` or a policy's toxicity entry.

    Args:
        model: Model spec (``default``, ``v1``, ``.npz`` path, Hugging Face id/path).
        policy: Policy file whose first toxicity entry configures the guardrail
            (its ``model`` wins over ``model`` unless that entry has none).

    Returns:
        The guardrail.
    """
    from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail

    entry = _policy_entry(policy)
    entry.setdefault("model", model)
    entry["type"] = "toxicity"
    return ToxicityGuardrail(ToxicityConfig.model_validate(entry))


def toxicity_scores(guard: Any, texts: list[str], batch: int = 256) -> np.ndarray:
    """Toxicity scores (N,) of ``texts`` with ``guard`` (default model, no language routing)."""
    out: list[float] = []
    for i in range(0, len(texts), batch):
        out += [s["toxicity"] for s in guard.classify(texts[i : i + batch])]
    return np.asarray(out, dtype=float)


def _emit(obj: Any, as_json: bool, lines: list[str]) -> None:
    typer.echo(json.dumps(obj, indent=1) if as_json else "\n".join(lines))


@app.command("audit-fairness")
def audit_fairness(
    data: Path | None = typer.Option(
        None,
        help="CSV of the Jigsaw template form (phrase, toxicity[, identity]); "
        "default: the shared jigsaw_templates_en.csv",
    ),
    model: str = typer.Option("default", help="default | v1 | weights .npz | Hugging Face id/path"),
    policy: Path | None = typer.Option(None, help="use this policy's toxicity entry (model, threshold)"),
    threshold: float | None = typer.Option(None, help="decision threshold (default: the guardrail's)"),
    metric: str = typer.Option("bpsn_auc", help="gap metric: fpr | fnr | subgroup_auc | bpsn_auc | bnsp_auc"),
    level: str = typer.Option("groups", help="gap over identity 'groups' or 'terms'"),
    max_gap: float = typer.Option(0.1, help="exit 1 when best - worst exceeds this"),
    per_term: int = typer.Option(40, help="sentences per identity term and label (0 = all)"),
    seed: int = typer.Option(0, help="sampling seed"),
    min_count: int = typer.Option(5, help="leave out identity terms with fewer sentences"),
    as_json: bool = typer.Option(False, "--json", help="print the full report as JSON"),
) -> None:
    """Per identity term/group FPR, FNR, subgroup AUC, BPSN and BNSP (Borkan et al. 2019); non-zero exit on a gap."""
    import csv
    import random

    from guardrails.toxicity.training.audit import TERM_GROUP, identity_term
    from guardrails.toxicity.training.data import shared_dir

    path = data or shared_dir() / "jigsaw_templates_en.csv"
    if metric not in ("fpr", "fnr", "subgroup_auc", "bpsn_auc", "bnsp_auc") or level not in ("groups", "terms"):
        typer.echo("bad --metric or --level", err=True)
        raise typer.Exit(2)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    tcol = "phrase" if rows and "phrase" in rows[0] else "text"
    icol = next((c for c in ("identity", "term", "identity_term") if rows and c in rows[0]), None)
    known = sorted(TERM_GROUP, key=len, reverse=True)
    items = []
    for r in rows:
        term = (r[icol].strip().lower() or None) if icol else identity_term(r[tcol], known)
        if term:
            items.append((r[tcol], int(str(r["toxicity"]).strip().lower() in ("toxic", "1", "true")), term))
    if per_term:
        rng = random.Random(seed)
        buckets: dict[tuple[str, int], list[Any]] = {}
        for it in items:
            buckets.setdefault((it[2], it[1]), []).append(it)
        items = [
            x
            for k in sorted(buckets)
            for x in (rng.sample(buckets[k], per_term) if len(buckets[k]) > per_term else buckets[k])
        ]
    if not items:
        typer.echo(f"{path}: no sentence names a known identity term", err=True)
        raise typer.Exit(2)
    guard = guardrail_for(model, policy)
    thr = guard.config.threshold if threshold is None else threshold
    texts = [i[0] for i in items]
    report = fairness_audit(
        texts,
        [i[1] for i in items],
        toxicity_scores(guard, texts),
        thr,
        identities=[i[2] for i in items],
        min_count=min_count,
    )
    g, best, worst = gap(report, metric, level)
    report["gap"] = {
        "metric": metric,
        "level": level,
        "value": g,
        "best": best,
        "worst": worst,
        "max_gap": max_gap,
        "passed": g <= max_gap,
    }
    lines = [
        f"{len(texts)} sentences, model {guard.config.model}, threshold {thr}",
        f"overall: AUC {report['overall']['auc']}  FPR {report['overall']['fpr']}  FNR {report['overall']['fnr']}",
        "",
        f"{'group/term':<22}{'n':>6}{'FPR':>8}{'FNR':>8}{'subAUC':>8}{'BPSN':>8}{'BNSP':>8}",
    ]
    for name, part in (("groups", report["groups"]), ("terms", report["terms"])):
        lines.append(f"-- {name}")
        for k, v in part.items():
            lines.append(
                f"{k:<22}{v['n']:>6}"
                + "".join(
                    f"{'-' if v[m] is None else format(v[m], '.3f'):>8}"
                    for m in ("fpr", "fnr", "subgroup_auc", "bpsn_auc", "bnsp_auc")
                )
            )
    lines.append(
        f"\n{metric} gap over {level}: {g:.4f} (best {best}, worst {worst}; bound {max_gap}) -> "
        + ("PASS" if g <= max_gap else "FAIL")
    )
    _emit(report, as_json, lines)
    if g > max_gap:
        raise typer.Exit(1)


@app.command("calibrate")
def calibrate(
    benign: Path = typer.Option(
        ...,
        help="sample of benign traffic (.txt lines, .csv/.tsv/.jsonl with a text "
        "column; rows labelled toxic are dropped)",
    ),
    target_fpr: float = typer.Option(0.01, help="at most this share of the benign sample is flagged"),
    toxic: Path | None = typer.Option(None, help="labelled toxic texts (only label-1 rows are used)"),
    policy: Path | None = typer.Option(None, help="policy file to write the threshold into"),
    model: str = typer.Option("default", help="model when the policy has no toxicity entry"),
    direction: str = typer.Option("both", help="which entries to set: input | output | both"),
    limit: int | None = typer.Option(None, help="score at most this many rows of each file (seeded sample)"),
    dry_run: bool = typer.Option(False, help="report only, do not write the policy"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Set the toxicity threshold so at most --target-fpr of benign traffic is flagged; report recall kept."""
    try:
        texts, labels = read_texts(benign, limit=limit)
        if labels is not None:
            texts = [t for t, y in zip(texts, labels, strict=False) if y == 0]
        tox_texts: list[str] = []
        if toxic is not None:
            tt, tl = read_texts(toxic, limit=limit)
            tox_texts = [t for t, y in zip(tt, tl or [1] * len(tt), strict=False) if y == 1]
    except (OSError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    guard = guardrail_for(model, policy)
    res = calibrate_threshold(
        toxicity_scores(guard, texts), target_fpr, toxicity_scores(guard, tox_texts) if tox_texts else None
    )
    res["previous_threshold"] = guard.config.threshold
    if tox_texts:  # a null threshold (the overall score does not fire under a preset) keeps no recall
        prev = toxicity_scores(guard, tox_texts)
        prev_t = 1.01 if guard.config.threshold is None else guard.config.threshold
        res["recall_at_previous"] = round(float((prev >= prev_t).mean()), 4)
    if policy is not None:
        dirs = ("input", "output") if direction == "both" else (direction,)
        try:
            res["policy_lines"] = set_policy_threshold(policy, res["threshold"], dirs, write=not dry_run)
        except (OSError, ValueError) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        res["policy_written"] = not dry_run
    lines = [
        f"threshold {res['threshold']:.4f} (was {res['previous_threshold']}): flags "
        f"{res['benign_flagged_rate']:.2%} of {res['benign_n']} benign texts (target {target_fpr:.2%})"
    ]
    if res["recall"] is not None:
        lines.append(
            f"recall on {res['toxic_n']} toxic texts: {res['recall']:.2%} "
            f"(at the previous threshold: {res['recall_at_previous']:.2%})"
        )
    if policy is not None:
        lines.append(("would write" if dry_run else "wrote") + f" {policy}: " + "; ".join(res["policy_lines"]))
    _emit(res, as_json, lines)


@app.command("compare-models")
def compare_models(
    old: str = typer.Argument(..., help="old model: default | v1 | weights .npz | Hugging Face id/path"),
    new: str = typer.Argument(..., help="new model, same forms"),
    data: Path = typer.Option(..., help="labelled texts (.csv/.tsv/.jsonl; text + label columns)"),
    old_threshold: float = typer.Option(0.5),
    new_threshold: float = typer.Option(0.5),
    text_col: str | None = typer.Option(None),
    label_col: str | None = typer.Option(None),
    limit: int | None = typer.Option(None, help="seeded sample of at most this many rows"),
    show: int = typer.Option(10, help="flipped examples to list"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Accuracy of OLD and NEW and the negative flip rate (Yan et al., CVPR 2021), with flipped examples."""
    try:
        texts, labels = read_texts(data, text_col, label_col, limit=limit)
    except (OSError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if labels is None:
        typer.echo(f"{data}: no label column; pass --label-col", err=True)
        raise typer.Exit(2)
    so = toxicity_scores(guardrail_for(old), texts)
    sn = toxicity_scores(guardrail_for(new), texts)
    res = compare(texts, labels, so, sn, old_threshold, new_threshold, show)
    res.update(old=old, new=new, data=str(data))
    lines = [
        f"{res['n']} examples from {data}",
        f"accuracy  old {old}: {res['old_accuracy']:.4f}   new {new}: {res['new_accuracy']:.4f}",
        f"negative flip rate: {res['negative_flip_rate']:.4f} ({res['negative_flips_n']} examples)   "
        f"positive flip rate: {res['positive_flip_rate']:.4f} ({res['positive_flips_n']})",
        "",
        "negative flips (old right, new wrong):",
    ]
    lines += [
        f"  [{f['label']}] old {f['old']:.3f} new {f['new']:.3f}  {f['text'][:100]!r}" for f in res["negative_flips"]
    ]
    _emit(res, as_json, lines)


@app.command("train-toxicity")
def train_toxicity(
    out: Path | None = typer.Option(None, help="output directory (default: weights/, or weights/<recipe>/)"),
    no_cv: bool = typer.Option(False, help="skip cross-validation"),
    recipe: str | None = typer.Option(
        None,
        help="the shipped default recipe when omitted (train.DEFAULT_RECIPE, v12); v11, v10, v9, v8, v7, v6, v5, v3, v2 or v1",
    ),
    multilingual: bool = typer.Option(True, help="also train the multilingual v2 heads (weights/multilingual_v2/)"),
    e5: bool = typer.Option(
        True, help="also train multilingual-e5 and its frozen heads (weights/multilingual_e5*/, ~30 min on 2 cores)"
    ),
    evaluate: bool = typer.Option(
        False,
        help="then score the dev/test splits, calibrate the strictness presets "
        "(weights/presets.json) and write docs/toxicity_eval.json",
    ),
) -> None:
    """Train the shipped toxicity models from the shared data, on CPU (and optionally evaluate + calibrate)."""
    from guardrails.toxicity.training.train import main

    main(
        (["--recipe", recipe] if recipe else []) + (["--out", str(out)] if out else []) + (["--no-cv"] if no_cv else [])
    )
    if multilingual:
        from guardrails.toxicity.training.multilingual_v2 import train

        train()
    if e5:
        from guardrails.toxicity.training.multilingual_e5 import train as train_e5

        train_e5()
    if evaluate:
        from guardrails.toxicity.training.evaluate import main as evaluate_main

        evaluate_main(["--calibrate"])


if __name__ == "__main__":
    app()
