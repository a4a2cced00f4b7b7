"""Admin routes for trust teams: policy reload and listing, audit queries, the console, and ``/metrics``.

``/admin/*`` and ``/console`` need the ``admin`` scope when authentication is
on (the auth middleware sets ``request.state.scopes``; without it, auth is off
and they are open, like the rest of a loopback-only gateway). ``/metrics`` is
left to the auth middleware's policy (Prometheus scrapers usually have no key).
"""

from __future__ import annotations

import asyncio
import html
import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.api.deps import gateway_of as _gw
from gateway.errors import APIError

router = APIRouter()

DECISIONS = ("allow", "flag", "redact", "block")


def require_admin(request: Request) -> None:
    """Refuse callers without the ``admin`` scope when auth is on.

    Raises:
        APIError: 403 ``insufficient_scope``.
    """
    scopes = getattr(request.state, "scopes", None)
    if scopes is not None and "admin" not in scopes:
        raise APIError(
            403, "this route needs an API key with the admin scope", type="permission_error", code="insufficient_scope"
        )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of :mod:`gateway.observability.metrics`."""
    from gateway.observability.metrics import render

    body, content_type = render()
    return Response(body, media_type=content_type)


@router.get("/admin/policies")
async def list_policies(request: Request) -> dict[str, Any]:
    """Live policies with versions, shadows, unavailable ones, routing and the last reload error (admin)."""
    require_admin(request)
    return _gw(request).store.describe()


@router.post("/admin/policies/reload")
async def reload_policies(request: Request) -> JSONResponse:
    """Re-read ``policies/`` now (admin). 200 with the new versions, or 422 listing every error (old set kept)."""
    require_admin(request)
    result = await asyncio.to_thread(_gw(request).store.reload)
    return JSONResponse(result.to_dict(), status_code=200 if result.ok else 422)


@router.get("/admin/audit")
async def audit_rows(
    request: Request,
    since: float | None = Query(None, ge=0, le=1e11, description="Unix time"),
    tenant: str | None = None,
    action: str | None = None,
    guardrail: str | None = None,
    policy: str | None = None,
    shadow: bool | None = None,
    request_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Recent audit rows, newest first, filtered like ``greenlist audit query`` (admin)."""
    require_admin(request)
    audit = _gw(request).audit
    if audit is None:
        raise APIError(404, "the audit log is disabled (audit_enabled=false)", code="audit_disabled")
    await asyncio.to_thread(audit.flush, 5.0)
    filters: dict[str, Any] = {
        "since": since,
        "tenant": tenant,
        "action": action,
        "guardrail": guardrail,
        "policy": policy,
    }
    rows = await asyncio.to_thread(audit.query, shadow=shadow, request_id=request_id, limit=limit, **filters)
    return {"object": "list", "data": rows}


@router.get("/console", response_class=HTMLResponse, include_in_schema=False)
async def console(
    request: Request,
    tenant: str = "",
    action: str = "",
    policy: str = "",
    guardrail: str = "",
    shadow: str = "",
    limit: int = 50,
) -> HTMLResponse:
    """The trust-team console (admin): recent decisions with filters, live policies, shadow-vs-live comparison."""
    require_admin(request)
    g = _gw(request)
    store_info = g.store.describe()
    rows: list[dict[str, Any]] = []
    recent: list[dict[str, Any]] = []
    if g.audit is not None:
        await asyncio.to_thread(g.audit.flush, 5.0)
        filters: dict[str, Any] = {
            "tenant": tenant or None,
            "action": action or None,
            "policy": policy or None,
            "guardrail": guardrail or None,
            "shadow": {"live": False, "shadow": True}.get(shadow),
            "limit": max(1, min(limit, 500)),
        }
        rows = await asyncio.to_thread(g.audit.query, **filters)
        recent = await asyncio.to_thread(g.audit.query, limit=2000)
    page = render_console(
        store_info,
        rows,
        recent,
        {
            "tenant": tenant,
            "action": action,
            "policy": policy,
            "guardrail": guardrail,
            "shadow": shadow,
            "limit": limit,
        },
        audit_on=g.audit is not None,
    )
    return HTMLResponse(page)


def shadow_comparison(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pair shadow rows with the live rows of the same request and direction.

    Args:
        rows: Audit rows (any order).

    Returns:
        ``{"pairs": N, "agree": N, "matrix": {(live, shadow): count},
        "disagreements": [{request_id, direction, live_policy, shadow_policy, live, shadow, time}]}``.
    """
    live: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if not r["shadow"]:
            live[(r["request_id"], r["direction"], r["policy"])] = r
    matrix: Counter[tuple[str, str]] = Counter()
    disagreements = []
    for r in rows:
        if not r["shadow"]:
            continue
        base = live.get((r["request_id"], r["direction"], r["live_policy"]))
        live_decision = base["decision"] if base else r["enforced"]
        matrix[(live_decision, r["decision"])] += 1
        if live_decision != r["decision"]:
            disagreements.append(
                {
                    "request_id": r["request_id"],
                    "direction": r["direction"],
                    "time": r["time"],
                    "live_policy": r["live_policy"],
                    "shadow_policy": r["policy"],
                    "live": live_decision,
                    "shadow": r["decision"],
                }
            )
    pairs = sum(matrix.values())
    agree = sum(c for (a, b), c in matrix.items() if a == b)
    return {"pairs": pairs, "agree": agree, "matrix": dict(matrix), "disagreements": disagreements}


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.block{color:#b00020;font-weight:600}.flag{color:#a36b00}.redact{color:#6a1b9a}.allow{color:#2e7d32}
.shadow{background:#f5f0ff}.err{color:#b00020}form label{margin-right:.8em}code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_console(
    store: dict[str, Any],
    rows: list[dict[str, Any]],
    recent: list[dict[str, Any]],
    filters: dict[str, Any],
    audit_on: bool = True,
) -> str:
    """The console page's HTML (server-rendered, no script).

    Args:
        store: :meth:`PolicyStore.describe` output.
        rows: Filtered audit rows to list.
        recent: Recent rows for the shadow-vs-live comparison.
        filters: The current filter values (to refill the form).
        audit_on: False when the audit log is disabled.
    """
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Greenlist console</title><style>{_CSS}</style>"
        "</head><body><h1>Greenlist console</h1>"
    ]
    out.append(
        f"<p>Policy generation <b id='generation'>{store['generation']}</b>, loaded "
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(store['loaded_at'])))}; default policy "
        f"<b>{_e(store['default'])}</b>.</p>"
    )
    if store.get("last_error"):
        out.append(
            "<p class='err' id='last-error'>Last reload rejected (still serving the previous set):<br>"
            + "<br>".join(_e(e) for e in store["last_error"])
            + "</p>"
        )
    out.append(
        "<h2>Live policies</h2><table id='policies'><tr><th>policy</th><th>version</th><th>extends</th>"
        "<th>shadow</th><th>file</th><th>description</th></tr>"
    )
    for p in store["policies"]:
        out.append(
            f"<tr><td>{_e(p['name'])}</td><td><code>{_e(p['version'])}</code></td><td>{_e(p['extends'])}</td>"
            f"<td>{_e(p['shadow'])}</td><td><code>{_e(p['path'])}</code></td><td>{_e(p['description'])}</td></tr>"
        )
    for name, err in sorted(store.get("unavailable", {}).items()):
        out.append(f"<tr class='err'><td>{_e(name)}</td><td colspan='5'>unavailable: {_e(err)}</td></tr>")
    out.append("</table>")

    if not audit_on:
        out.append("<p>The audit log is disabled (<code>audit_enabled=false</code>).</p></body></html>")
        return "".join(out)

    cmp = shadow_comparison(recent)
    out.append(
        f"<h2>Shadow vs live</h2><p id='shadow-summary'>{cmp['pairs']} shadow decisions in the last "
        f"{len(recent)} records; {cmp['agree']} agree with the live decision, "
        f"{cmp['pairs'] - cmp['agree']} differ.</p>"
    )
    if cmp["pairs"]:
        out.append(
            "<table id='shadow-matrix'><tr><th>live \\ shadow</th>"
            + "".join(f"<th>{d}</th>" for d in DECISIONS)
            + "</tr>"
        )
        for a in DECISIONS:
            out.append(
                f"<tr><th>{a}</th>" + "".join(f"<td>{cmp['matrix'].get((a, b), 0)}</td>" for b in DECISIONS) + "</tr>"
            )
        out.append("</table>")
        if cmp["disagreements"]:
            out.append(
                "<table id='shadow-diffs'><tr><th>time</th><th>request</th><th>direction</th><th>live</th>"
                "<th>shadow</th></tr>"
            )
            for d in cmp["disagreements"][:50]:
                out.append(
                    f"<tr><td>{_e(d['time'])}</td><td><code>{_e(d['request_id'])}</code></td>"
                    f"<td>{_e(d['direction'])}</td><td class='{_e(d['live'])}'>{_e(d['live_policy'])}: "
                    f"{_e(d['live'])}</td><td class='{_e(d['shadow'])}'>{_e(d['shadow_policy'])}: "
                    f"{_e(d['shadow'])}</td></tr>"
                )
            out.append("</table>")

    out.append("<h2>Recent decisions</h2><form id='filters' method='get' action='/console'>")
    for key in ("tenant", "policy", "guardrail"):
        out.append(f"<label>{key} <input name='{key}' value='{_e(filters.get(key))}' size='12'></label>")
    out.append(
        "<label>action <select name='action'><option value=''>any</option>"
        + "".join(f"<option{' selected' if filters.get('action') == d else ''}>{d}</option>" for d in DECISIONS)
        + "</select></label>"
    )
    out.append(
        "<label>rows <select name='shadow'>"
        + "".join(
            f"<option value='{v}'{' selected' if filters.get('shadow') == v else ''}>{t}</option>"
            for v, t in (("", "live + shadow"), ("live", "live only"), ("shadow", "shadow only"))
        )
        + "</select></label>"
    )
    out.append(
        f"<label>limit <input name='limit' value='{_e(filters.get('limit'))}' size='4'></label>"
        "<button type='submit' id='apply'>Filter</button></form>"
    )
    out.append(
        "<table id='decisions'><tr><th>time (UTC)</th><th>request</th><th>tenant</th><th>endpoint</th>"
        "<th>dir</th><th>policy@version</th><th>decision</th><th>guardrails (score → decision)</th>"
        "<th>ms</th><th>text</th></tr>"
    )
    for r in rows:
        gs = "<br>".join(
            f"{_e(g.get('name'))}: {float(g.get('score') or 0):.3f} → "
            f"<span class='{_e(g.get('decision'))}'>{_e(g.get('decision'))}</span>"
            + (f" <span class='err'>({_e(g['error'])})</span>" if g.get("error") else "")
            for g in r["guardrails"]
        )
        text = (
            _e(r["text"][:160])
            if r.get("text")
            else f"sha256 <code>{_e(r['text_sha256'][:12])}</code>…, {r['text_len']} chars"
        )
        cls = " class='shadow'" if r["shadow"] else ""
        label = " (shadow)" if r["shadow"] else ""
        out.append(
            f"<tr{cls}><td>{_e(r['time'])}</td><td><code>{_e(r['request_id'][:12])}</code></td>"
            f"<td>{_e(r['tenant'])}</td><td>{_e(r['endpoint'])}</td><td>{_e(r['direction'])}</td>"
            f"<td>{_e(r['policy'])}@<code>{_e(r['policy_version'])}</code>{label}</td>"
            f"<td class='{_e(r['decision'])}'>{_e(r['decision'])}</td><td>{gs}</td>"
            f"<td>{r['latency_ms']:.1f}</td><td>{text}</td></tr>"
        )
    out.append(f"</table><p id='row-count'>{len(rows)} rows</p></body></html>")
    return "".join(out)
