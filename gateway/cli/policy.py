"""``greenlist policy check | schema | diff``: validate, describe and compare policy files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

policy_app = typer.Typer(help="Validate and inspect policy files.", no_args_is_help=True)


@policy_app.command("check")
def policy_check(
    files: list[Path] = typer.Argument(..., help="Policy files, or a policies/ folder (+ routing.yaml)."),
) -> None:
    """Validate policy files (following ``extends``); print every error with file, line and field; exit 1 if any is invalid."""
    from gateway.policy.schema import PolicyError, load_policy
    from gateway.policy.store import PolicyStore

    failed = False
    for path in files:
        try:
            if path.is_dir():
                loaded_all, _, default = PolicyStore(path).validate()
                typer.echo(f"{path}: ok ({len(loaded_all)} policies, default {default!r}, routing valid)")
                continue
            loaded = load_policy(path)
            based = f", extends {' <- '.join(str(b) for b in loaded.bases)}" if loaded.bases else ""
            typer.echo(f"{path}: ok (policy {loaded.policy.name!r}, version {loaded.version}{based})")
        except PolicyError as exc:
            failed = True
            for issue in exc.issues:
                typer.echo(str(issue), err=True)
    raise typer.Exit(1 if failed else 0)


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of policy files (for editor validation)."""
    import json

    from gateway.policy.schema import policy_json_schema

    typer.echo(json.dumps(policy_json_schema(), indent=2))


def _policy_path(value: str) -> Path:
    path = Path(value)
    if path.exists():
        return path
    from gateway.policy.schema import DEFAULT_POLICY_PATH

    named = DEFAULT_POLICY_PATH.parent / f"{value}.yaml"
    return named if named.exists() else path


@policy_app.command("diff")
def policy_diff(
    old: str = typer.Argument(..., help="Old (live) policy: a file, or a name in policies/."),
    new: str = typer.Argument(..., help="New (candidate) policy: a file, or a name in policies/."),
    replay: str = typer.Option(..., "--replay", help="CSV/JSONL of texts (+ labels), or 'audit' / 'audit:URL'."),
    max_negative_flip_rate: float | None = typer.Option(
        None, help="Exit 1 when the negative flip rate is above this (e.g. 0.01 = 1%)."
    ),
    text_column: str | None = typer.Option(None, help="Text column (default: text/prompt/tweet/...)."),
    label_column: str | None = typer.Option(None, help="Label column (default: expected/label/...; '-' = none)."),
    block_values: str | None = typer.Option(None, help="Comma-separated label values meaning 'should be stopped'."),
    direction: str = typer.Option("input", help="Direction to check file texts in: input or output."),
    sample: int | None = typer.Option(None, help="Replay a seeded random sample of this many texts."),
    seed: int = typer.Option(0, help="Seed of --sample."),
    positive: str = typer.Option("block", help="Comma-separated decisions that count as stopping a text."),
    report: Path | None = typer.Option(None, help="Also write the Markdown report to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of Markdown."),
    examples: int = typer.Option(5, help="Example texts listed per flip kind in the report."),
    timeout_s: float = typer.Option(60.0, help="Guardrail timeout during the replay (at least this many seconds)."),
) -> None:
    """Replay texts through OLD and NEW (guardrails only, no generation) and report what flips.

    Exit codes: 0 ok, 1 negative flip rate above --max-negative-flip-rate, 2 invalid policy or replay source.
    """
    from gateway.policy.diff import ReplayError, diff_policies, read_replay, relax_timeouts, render_markdown
    from gateway.policy.schema import PolicyError, load_policy
    from gateway.serving.pipeline import Pipeline

    try:
        old_p = Pipeline(load_policy(_policy_path(old)))
        new_p = Pipeline(load_policy(_policy_path(new)))
    except PolicyError as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None
    relax_timeouts(old_p, timeout_s)
    relax_timeouts(new_p, timeout_s)
    try:
        items = read_replay(
            replay,
            text_column=text_column,
            label_column=label_column,
            block_values=block_values.split(",") if block_values else None,
            direction=direction,
            sample=sample,
            seed=seed,
        )
    except (ReplayError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not items:
        typer.echo("error: the replay source has no texts", err=True)
        raise typer.Exit(2)
    result = diff_policies(
        old_p,
        new_p,
        items,
        source=replay,
        positive_decisions=tuple(p.strip() for p in positive.split(",") if p.strip()),
    )
    text = render_markdown(result, max_negative_flip_rate=max_negative_flip_rate, examples=examples)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text, encoding="utf-8")
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else text)
    nfr = result.negative_flip_rate
    if max_negative_flip_rate is not None and nfr is not None and nfr > max_negative_flip_rate:
        typer.echo(f"negative flip rate {nfr:.4f} is above the gate {max_negative_flip_rate}", err=True)
        raise typer.Exit(1)
