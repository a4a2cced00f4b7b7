"""``greenlist audit query``: read the audit log of guardrail decisions."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC

import typer

audit_app = typer.Typer(help="Query the audit log of guardrail decisions.", no_args_is_help=True)


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
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 30m, 2h, 7d, a Unix time or an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@audit_app.command("query")
def audit_query(
    since: str | None = typer.Option(None, help="Only decisions since: 30m, 2h, 7d, Unix time or ISO 8601."),
    until: str | None = typer.Option(None, help="Only decisions before this time (same forms)."),
    tenant: str | None = typer.Option(None, help="Only this tenant."),
    action: str | None = typer.Option(None, help="Only this decision: allow, flag, redact, block."),
    guardrail: str | None = typer.Option(None, help="Only decisions where this guardrail fired."),
    policy: str | None = typer.Option(None, help="Only this policy."),
    request_id: str | None = typer.Option(None, help="Only this request's decisions."),
    shadow: bool | None = typer.Option(None, "--shadow/--live", help="Only shadow (or only live) decisions."),
    limit: int = typer.Option(100, help="Most rows (newest first)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per line (for export)."),
    url: str | None = typer.Option(None, help="Audit database URL (default: the gateway's audit_url setting)."),
) -> None:
    """Print audit-log decisions matching the filters (newest first)."""
    from gateway.observability.audit import AuditQuery, default_audit_url, open_engine, query_engine
    from gateway.settings import Settings

    if url is None:
        settings = Settings()
        url = settings.audit_url or default_audit_url(settings.home)
    engine = open_engine(url)
    try:
        rows = query_engine(
            engine,
            AuditQuery(
                since=parse_since(since) if since else None,
                until=parse_since(until) if until else None,
                tenant=tenant,
                action=action,
                guardrail=guardrail,
                policy=policy,
                shadow=shadow,
                request_id=request_id,
                limit=limit,
            ),
        )
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
        out.write(
            f"{r['time']}  {r['request_id'][:12]}  {r['tenant'] or '-':<12} {r['endpoint']:<22} "
            f"{r['direction']:<6} {r['policy']}@{r['policy_version']}{' (shadow)' if r['shadow'] else ''}  "
            f"{r['decision']:<6} fired={fired} {scores} {r['latency_ms']:.1f}ms\n"
        )
    typer.echo(f"{len(rows)} rows", err=True)
