"""Command-line tools of the trust-team workflow: ``greenlist policy diff`` and ``greenlist audit query``.

Registered on the main app in :mod:`gateway.cli`.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Optional

import typer

audit_app = typer.Typer(help="Query the audit log of guardrail decisions.", no_args_is_help=True)


def _policy_path(value: str) -> Path:
    path = Path(value)
    if path.exists():
        return path
    from gateway.policy import DEFAULT_POLICY_PATH

    named = DEFAULT_POLICY_PATH.parent / f"{value}.yaml"
    return named if named.exists() else path


def policy_diff(
    old: str = typer.Argument(..., help="Old (live) policy: a file, or a name in policies/."),
    new: str = typer.Argument(..., help="New (candidate) policy: a file, or a name in policies/."),
    replay: str = typer.Option(..., "--replay", help="CSV/JSONL of texts (+ labels), or 'audit' / 'audit:URL'."),
    max_negative_flip_rate: Optional[float] = typer.Option(
        None, help="Exit 1 when the negative flip rate is above this (e.g. 0.01 = 1%)."),
    text_column: Optional[str] = typer.Option(None, help="Text column (default: text/prompt/tweet/...)."),
    label_column: Optional[str] = typer.Option(None, help="Label column (default: expected/label/...; '-' = none)."),
    block_values: Optional[str] = typer.Option(None, help="Comma-separated label values meaning 'should be stopped'."),
    direction: str = typer.Option("input", help="Direction to check file texts in: input or output."),
    sample: Optional[int] = typer.Option(None, help="Replay a seeded random sample of this many texts."),
    seed: int = typer.Option(0, help="Seed of --sample."),
    positive: str = typer.Option("block", help="Comma-separated decisions that count as stopping a text."),
    report: Optional[Path] = typer.Option(None, help="Also write the Markdown report to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of Markdown."),
    examples: int = typer.Option(5, help="Example texts listed per flip kind in the report."),
    timeout_s: float = typer.Option(60.0, help="Guardrail timeout during the replay (at least this many seconds)."),
) -> None:
    """Replay texts through OLD and NEW (guardrails only, no generation) and report what flips.

    Exit codes: 0 ok, 1 negative flip rate above --max-negative-flip-rate, 2 invalid policy or replay source.
    """
    from gateway.pipeline import Pipeline
    from gateway.policy import PolicyError, load_policy
    from gateway.policy_diff import ReplayError, diff_policies, read_replay, relax_timeouts, render_markdown

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
        items = read_replay(replay, text_column=text_column, label_column=label_column,
                            block_values=block_values.split(",") if block_values else None,
                            direction=direction, sample=sample, seed=seed)
    except (ReplayError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not items:
        typer.echo("error: the replay source has no texts", err=True)
        raise typer.Exit(2)
    result = diff_policies(old_p, new_p, items, source=replay,
                           positive_decisions=tuple(p.strip() for p in positive.split(",") if p.strip()))
    text = render_markdown(result, max_negative_flip_rate=max_negative_flip_rate, examples=examples)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text, encoding="utf-8")
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else text)
    nfr = result.negative_flip_rate
    if max_negative_flip_rate is not None and nfr is not None and nfr > max_negative_flip_rate:
        typer.echo(f"negative flip rate {nfr:.4f} is above the gate {max_negative_flip_rate}", err=True)
        raise typer.Exit(1)


_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def parse_since(value: str) -> float:
    """Unix time from ``30m`` / ``2h`` / ``7d`` (ago), a Unix timestamp, or an ISO 8601 date/time (UTC if no zone).

    Raises:
        typer.BadParameter: for anything else.
    """
    m = _REL.match(value.strip())
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 30m, 2h, 7d, a Unix time or an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


@audit_app.command("query")
def audit_query(
    since: Optional[str] = typer.Option(None, help="Only decisions since: 30m, 2h, 7d, Unix time or ISO 8601."),
    until: Optional[str] = typer.Option(None, help="Only decisions before this time (same forms)."),
    tenant: Optional[str] = typer.Option(None, help="Only this tenant."),
    action: Optional[str] = typer.Option(None, help="Only this decision: allow, flag, redact, block."),
    guardrail: Optional[str] = typer.Option(None, help="Only decisions where this guardrail fired."),
    policy: Optional[str] = typer.Option(None, help="Only this policy."),
    request_id: Optional[str] = typer.Option(None, help="Only this request's decisions."),
    shadow: Optional[bool] = typer.Option(None, "--shadow/--live", help="Only shadow (or only live) decisions."),
    limit: int = typer.Option(100, help="Most rows (newest first)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per line (for export)."),
    url: Optional[str] = typer.Option(None, help="Audit database URL (default: the gateway's audit_url setting)."),
) -> None:
    """Print audit-log decisions matching the filters (newest first)."""
    from gateway.audit import AuditQuery, default_audit_url, open_engine, query_engine
    from gateway.settings import Settings

    if url is None:
        settings = Settings()
        url = settings.audit_url or default_audit_url(settings.home)
    engine = open_engine(url)
    try:
        rows = query_engine(engine, AuditQuery(
            since=parse_since(since) if since else None, until=parse_since(until) if until else None,
            tenant=tenant, action=action, guardrail=guardrail, policy=policy, shadow=shadow,
            request_id=request_id, limit=limit))
    finally:
        engine.dispose()
    out = sys.stdout
    if jsonl:
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    for r in rows:
        fired = ",".join(g["name"] for g in r["guardrails"] if g.get("decision") not in (None, "allow")) or "-"
        scores = " ".join(f"{g['name']}={float(g.get('score') or 0):.3f}" for g in r["guardrails"])
        out.write(f"{r['time']}  {r['request_id'][:12]}  {r['tenant'] or '-':<12} {r['endpoint']:<22} "
                  f"{r['direction']:<6} {r['policy']}@{r['policy_version']}{' (shadow)' if r['shadow'] else ''}  "
                  f"{r['decision']:<6} fired={fired} {scores} {r['latency_ms']:.1f}ms\n")
    typer.echo(f"{len(rows)} rows", err=True)
