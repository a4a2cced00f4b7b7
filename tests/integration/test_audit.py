"""Audit log: round trip on SQLite (WAL) and on a real PostgreSQL server; the HTTP hooks; the query CLI; metrics."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.observability.audit import AuditLog, make_record
from tests.cluster_fixtures import postgres_server
from tests.conftest import ServerThread
from tests.trust_fixtures import make_gateway, policy_yaml


def _rows(n: int, t0: float) -> list[dict]:
    out = []
    for i in range(n):
        blocked = i % 3 == 0
        out.append(
            make_record(
                request_id=f"req-{i}",
                tenant="acme" if i % 2 else "kids-app",
                endpoint="/v1/guardrails/check",
                direction="input",
                policy="default",
                policy_version="abc123def456",
                decision="block" if blocked else "allow",
                guardrails=[
                    {
                        "name": "toxicity",
                        "score": 0.9 if blocked else 0.1,
                        "decision": "block" if blocked else "allow",
                        "action": "block" if blocked else None,
                        "latency_ms": 3.5,
                        "details": {"big": "kept"},
                    }
                ],
                latency_ms=3.5,
                text=f"text number {i}",
                store_text=(i == 4),
                ts=t0 + i,
            )
        )
    return out


def round_trip(url: str) -> None:
    """Write rows through the background writer, close (flushes), reopen and query with every filter."""
    t0 = time.time() - 100
    log = AuditLog(url)
    for row in _rows(30, t0):
        log.record(row)
    log.close()  # nothing queued may be lost
    log = AuditLog(url)
    try:
        every = log.query(limit=1000)
        assert len(every) == 30 and every[0]["request_id"] == "req-29"  # newest first
        assert {r["policy_version"] for r in every} == {"abc123def456"}
        blocked = log.query(action="block", limit=1000)
        assert len(blocked) == 10 and all(r["decision"] == "block" for r in blocked)
        assert len(log.query(tenant="acme", limit=1000)) == 15
        assert len(log.query(guardrail="toxicity", limit=1000)) == 10  # where it fired
        assert len(log.query(since=t0 + 25, limit=1000)) == 5
        r4 = log.query(request_id="req-4")[0]
        assert r4["text"] == "text number 4"  # store_text: true
        r5 = log.query(request_id="req-5")[0]
        assert r5["text"] is None and r5["text_len"] == len("text number 5")  # default: hash + length only
        assert r5["text_sha256"] == hashlib.sha256(b"text number 5").hexdigest()
        assert r5["guardrails"] == [
            {
                "name": "toxicity",
                "score": 0.1,
                "decision": "allow",
                "action": None,
                "latency_ms": 3.5,
                "outcome": "allow",
                "details": {"big": "kept"},
            }
        ]
        assert r5["shadow"] is False and r5["time"].endswith("Z")
    finally:
        log.close()


def test_sqlite_round_trip_in_wal_mode(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    round_trip(url)
    import sqlite3

    assert sqlite3.connect(tmp_path / "audit.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writes_do_not_block_and_close_flushes(tmp_path: Path):
    log = AuditLog(f"sqlite:///{tmp_path / 'a.db'}")
    rows = _rows(2000, time.time())
    start = time.perf_counter()
    for row in rows:
        log.record(row)
    queued_in = time.perf_counter() - start
    log.close()
    assert queued_in < 0.5  # record() only enqueues
    assert log.written == 2000 and log.failed == 0


def test_audit_query_cli(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    log = AuditLog(url)
    for row in _rows(6, time.time() - 10):
        log.record(row)
    log.close()
    res = CliRunner().invoke(cli, ["audit", "query", "--url", url, "--action", "block", "--jsonl", "--since", "1h"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert [r["request_id"] for r in lines] == ["req-3", "req-0"]
    res = CliRunner().invoke(cli, ["audit", "query", "--url", url, "--tenant", "acme"])
    assert res.exit_code == 0 and res.stdout.count("acme") == 3 and "toxicity=" in res.stdout


# --------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (tests/cluster_fixtures.py)."""
    with postgres_server() as pg:
        yield pg.url


def test_postgresql_round_trip(postgres_url: str):
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")
    round_trip(postgres_url)
    res = CliRunner().invoke(cli, ["audit", "query", "--url", postgres_url, "--guardrail", "toxicity", "--jsonl"])
    assert res.exit_code == 0 and len([x for x in res.stdout.splitlines() if x.startswith("{")]) == 10


def test_replicas_creating_the_table_at_once_do_not_fail():
    """Eight engines opened at the same moment on an empty PostgreSQL all succeed (the schema step is serialised
    by an advisory lock; two bare ``create_all`` calls race on ``pg_type``, which once stopped a replica)."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")
    import threading

    from gateway.observability.audit_db import open_engine

    with postgres_server() as pg:
        barrier, errors = threading.Barrier(8), []

        def start() -> None:
            barrier.wait()
            try:
                open_engine(pg.url).dispose()
            except Exception as exc:  # noqa: BLE001 - the test reports whatever a replica would have died of
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        round_trip(pg.url)


# --------------------------------------------------------------------------------------------- HTTP hooks


@pytest.fixture()
def trust_server(tmp_path: Path) -> Iterator[tuple]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(policy_yaml("default", 1.0, shadow="strict"))
    (policies / "strict.yaml").write_text(policy_yaml("strict", 0.0, extends="default", store_text=True))
    gw = make_gateway(policies, f"sqlite:///{tmp_path / 'audit.db'}", policy_watch=False)
    from gateway.api.app import create_app

    with ServerThread(create_app(gw.settings, gateway=gw)) as srv:
        yield srv, gw
    gw.audit.close()


def _wait_rows(gw, n: int, **filters) -> list[dict]:
    deadline = time.time() + 20
    while True:
        gw.audit.flush()
        rows = gw.audit.query(limit=1000, **filters)
        if len(rows) >= n or time.time() > deadline:
            return rows
        time.sleep(0.05)


def test_check_endpoint_is_audited_with_shadow_and_metrics(trust_server):
    srv, gw = trust_server
    c = httpx.Client(base_url=srv.url, timeout=60)
    r = c.post(
        "/v1/guardrails/check",
        json={"text": "Have a lovely day.", "direction": "input"},
        headers={"x-request-id": "audit-me-1"},
    )
    body = r.json()
    assert r.status_code == 200 and body["decision"] == "allow" and body["request_id"] == "audit-me-1"
    rows = _wait_rows(gw, 2, request_id="audit-me-1")
    live = [x for x in rows if not x["shadow"]]
    shadow = [x for x in rows if x["shadow"]]
    assert len(live) == 1 and len(shadow) == 1
    assert live[0]["policy"] == "default" and live[0]["policy_version"] == body["policy"]["version"]
    assert live[0]["endpoint"] == "/v1/guardrails/check" and live[0]["text"] is None
    assert live[0]["tenant"] == "default"  # auth off: the auth middleware's tenant
    # the shadow policy blocks everything, but the response was not changed
    assert shadow[0]["policy"] == "strict" and shadow[0]["decision"] == "block" and shadow[0]["enforced"] == "allow"
    assert shadow[0]["live_policy"] == "default" and shadow[0]["text"] == "Have a lovely day."  # strict stores text
    # explicit choice of the strict policy (allowed: auth off gives every scope)
    r2 = c.post("/v1/guardrails/check", json={"text": "Have a lovely day.", "direction": "input", "policy": "strict"})
    assert r2.json()["decision"] == "block" and r2.json()["policy"]["name"] == "strict"
    # moderations are audited too
    m = c.post(
        "/v1/moderations", json={"input": ["hello there", "you are wonderful"]}, headers={"x-request-id": "mod-1"}
    )
    assert m.status_code == 200
    assert len(_wait_rows(gw, 2, request_id="mod-1")) == 2
    metrics = c.get("/metrics").text
    assert 'greenlist_decisions_total{decision="allow",direction="input",policy="default",shadow="false"}' in metrics
    assert 'greenlist_decisions_total{decision="block",direction="input",policy="strict",shadow="true"}' in metrics
    assert "greenlist_guardrail_latency_seconds_bucket" in metrics
    assert 'greenlist_requests_total{endpoint="/v1/guardrails/check",status="200"}' in metrics
    assert "greenlist_policy_info" in metrics
    c.post("/v1/guardrails/check", json={"text": "x", "policy": "nope"})
    assert 'greenlist_errors_total{endpoint="/v1/guardrails/check",status="404"}' in c.get("/metrics").text
    # the admin audit route answers the same question over HTTP
    got = c.get("/admin/audit", params={"request_id": "audit-me-1"}).json()["data"]
    assert {x["policy"] for x in got} == {"default", "strict"}
    c.close()


def test_admin_routes_need_the_admin_scope():
    from types import SimpleNamespace

    from gateway.api.admin import require_admin
    from gateway.errors import APIError

    require_admin(SimpleNamespace(state=SimpleNamespace()))  # auth off: no scopes attribute
    require_admin(SimpleNamespace(state=SimpleNamespace(scopes=frozenset({"admin"}))))
    with pytest.raises(APIError) as info:
        require_admin(SimpleNamespace(state=SimpleNamespace(scopes=frozenset({"generate", "verify"}))))
    assert info.value.status == 403


@pytest.mark.slow
def test_completions_are_audited(client, gateway):
    """The real pipeline (embedded model): prompt and output verdicts of plain and streamed completions."""
    model = gateway.backend.model_ids[0]
    msg = [{"role": "user", "content": "Name a colour."}]
    rid1, rid2 = (f"chat-audit-{uuid.uuid4().hex}" for _ in range(2))  # unique even in a reused GREENLIST_HOME
    r = client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": msg, "max_tokens": 6, "temperature": 0},
        headers={"x-request-id": rid1},
    )
    assert r.status_code == 200 and r.json()["greenlist"]["request_id"] == rid1
    with client.stream(
        "POST",
        "/v1/chat/completions",
        headers={"x-request-id": rid2},
        json={"model": model, "messages": msg, "max_tokens": 6, "temperature": 0, "stream": True},
    ) as s:
        assert s.status_code == 200 and "[DONE]" in "".join(s.iter_text())
    for rid in (rid1, rid2):
        rows = _wait_rows(gateway, 2, request_id=rid)
        assert sorted(x["direction"] for x in rows) == ["input", "output"], rows
        assert all(x["endpoint"] == "/v1/chat/completions" and x["policy"] == "default" for x in rows)
        assert all(x["policy_version"] == gateway.store.default.version for x in rows)
        assert rows[0]["text"] is None and rows[0]["text_len"] > 0


# --------------------------------------------------------------------------------------------- durability


def test_postgresql_down_spills_and_replays_in_order_without_duplicates(tmp_path: Path):
    """PostgreSQL stopped while records arrive: they spill to disk, replay in order when it is back, no duplicates."""
    with postgres_server() as pg:
        log = AuditLog(pg.url, spill_dir=tmp_path / "spill", queue_size=50, retry_s=0.2)
        rows = _rows(600, time.time())
        for row in rows[:100]:
            log.record(row)
        assert log.flush(20) and log.written == 100
        pg.stop()
        for row in rows[100:500]:
            log.record(row)  # never blocks, never raises; the queue of 50 overflows to disk
        deadline = time.time() + 20
        while log.pending and log.spill.pending < 400 and time.time() < deadline:
            time.sleep(0.05)
        assert log.spilled >= 400 and log.spill.pending == 400
        pg.start()
        for row in rows[500:]:
            log.record(row)
        assert log.flush(60), f"{log.pending} records still pending"
        got = log.query(limit=10_000)
        assert len(got) == 600 and len({r["record_id"] for r in got}) == 600
        assert [r["request_id"] for r in got][::-1] == [f"req-{i}" for i in range(600)]  # order kept (ts order too)
        # a replay interrupted after the insert but before the cursor moved inserts nothing twice
        log.spill.append(rows[:10])
        assert log.flush(20) and len(log.query(limit=10_000)) == 600
        assert log.spill.pending == 0 and log.spill.path.stat().st_size == 0
        log.close()
        # shutdown while the database is down: queued records are spilled and replayed by the next start
        log = AuditLog(pg.url, spill_dir=tmp_path / "spill", retry_s=0.2)
        pg.stop()
        extra = _rows(30, time.time() + 1000)
        for row in extra:
            row["request_id"] = "late-" + row["request_id"]
            log.record(row)
        log.close(10)
        assert log.spill.pending == 30
        pg.start()
        log = AuditLog(pg.url, spill_dir=tmp_path / "spill", retry_s=0.2)
        log.record(
            make_record(
                request_id="wake",
                tenant=None,
                endpoint="/x",
                direction="input",
                policy="p",
                policy_version="v",
                decision="allow",
                guardrails=[],
                latency_ms=1,
                text="t",
            )
        )
        assert log.flush(30)
        assert len(log.query(limit=10_000)) == 631  # 600 + 30 replayed at start + 1
        log.close()
