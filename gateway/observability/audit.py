"""The audit log: every guardrail decision, queryable a week later ("why was this blocked?").

One row per checked text (a prompt, an output, a ``/v1/guardrails/check`` text,
a moderation input, or a shadow policy's verdict on any of them): time, request
id, tenant, endpoint, direction, policy and version, shadow flag, each
guardrail's score / decision / action / latency, the resulting decision,
latency, and the text as a SHA-256 and length (raw text only when the policy
has ``audit: {store_text: true}``).

Storage is SQLAlchemy Core: SQLite by default (``$GREENLIST_HOME/audit.db``,
WAL mode, so readers such as ``greenlist audit query`` never block the
writer), PostgreSQL (or anything SQLAlchemy speaks) by URL (setting
``audit_url``, e.g. ``postgresql+psycopg://user@host/db``).

Writes never block the event loop: :meth:`AuditLog.record` puts the row on a
queue and a background thread inserts in batches. :meth:`AuditLog.flush`
waits until everything queued is committed; :meth:`AuditLog.close` flushes
and stops the thread (the app calls it on shutdown, so nothing is lost).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (Boolean, Column, Float, Integer, MetaData, String, Table, Text, create_engine, event,
                        select)
from sqlalchemy.engine import Engine

log = logging.getLogger("greenlist.audit")

metadata = MetaData()

decisions = Table(
    "greenlist_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False, index=True),
    Column("request_id", String(64), index=True),
    Column("tenant", String(200), index=True),
    Column("endpoint", String(100)),
    Column("direction", String(16)),
    Column("policy", String(200), index=True),
    Column("policy_version", String(32)),
    Column("shadow", Boolean, nullable=False, default=False),
    Column("live_policy", String(200)),
    Column("decision", String(16), index=True),
    Column("enforced", String(16)),
    Column("guardrails", Text),
    Column("fired", Text),
    Column("latency_ms", Float),
    Column("text_sha256", String(64)),
    Column("text_len", Integer),
    Column("text", Text),
)

_COLUMNS = [c.name for c in decisions.columns]


def default_audit_url(home: Path) -> str:
    """SQLite URL of the default audit database, ``<home>/audit.db``."""
    return f"sqlite:///{Path(home) / 'audit.db'}"


def _slim(g: dict[str, Any]) -> dict[str, Any]:
    """One guardrail's entry in an audit row: its result, ``outcome`` (``error`` or the decision), details."""
    out: dict[str, Any] = {k: g.get(k) for k in ("name", "score", "decision", "action", "latency_ms", "error", "overrides") if k in g}
    out["outcome"] = "error" if g.get("error") else g.get("decision")
    details = g.get("details")
    if details:
        text = json.dumps(details, default=str)
        out["details"] = details if len(text) <= 4000 else {"truncated": text[:4000]}
    return out


def make_record(*, request_id: str, tenant: str | None, endpoint: str, direction: str, policy: str,
                policy_version: str, decision: str, guardrails: Iterable[dict[str, Any]], latency_ms: float,
                text: str, store_text: bool = False, shadow: bool = False, live_policy: str | None = None,
                enforced: str | None = None, ts: float | None = None) -> dict[str, Any]:
    """Build one audit row.

    Args:
        request_id: Id shared by every row of one request.
        tenant: The API key's tenant, or None.
        endpoint: Route path, e.g. ``/v1/chat/completions``.
        direction: ``input`` or ``output``.
        policy, policy_version: The policy that produced the decision.
        decision: ``allow``, ``flag``, ``redact`` or ``block``.
        guardrails: Each guardrail's result dict (``name``, ``score``,
            ``decision``, ``action``, ``latency_ms``, ``error``, ``details``); a failed scan is recorded with
            ``outcome: "error"`` (never as a pass), and details longer than 4,000 characters of JSON are cut.
        latency_ms: Time to check the text.
        text: The checked text (hashed; stored raw only if ``store_text``).
        store_text: Keep the raw text.
        shadow: True for a shadow policy's (not enforced) decision.
        live_policy: For a shadow row, the live policy it shadowed.
        enforced: What the gateway did with the text (the live decision); for
            shadow rows the live policy's decision.
        ts: Unix time (default now).

    Returns:
        A dict with the table's columns.
    """
    slim = [_slim(g) for g in guardrails]
    fired = [g["name"] for g in slim if g.get("decision") not in (None, "allow")]
    return {
        "ts": time.time() if ts is None else ts,
        "request_id": request_id,
        "tenant": tenant,
        "endpoint": endpoint,
        "direction": direction,
        "policy": policy,
        "policy_version": policy_version,
        "shadow": shadow,
        "live_policy": live_policy,
        "decision": decision,
        "enforced": enforced or decision,
        "guardrails": json.dumps(slim),
        "fired": "," + ",".join(fired) + "," if fired else "",
        "latency_ms": round(float(latency_ms), 3),
        "text_sha256": hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest(),
        "text_len": len(text),
        "text": text if store_text else None,
    }


@dataclass
class AuditQuery:
    """Filters of :meth:`AuditLog.query` (all optional, combined with AND).

    Attributes:
        since, until: Unix-time bounds (inclusive / exclusive).
        tenant: Exact tenant.
        action: Decision (``allow``, ``flag``, ``redact``, ``block``).
        guardrail: Name of a guardrail that fired (decision other than ``allow``).
        policy: Policy name.
        shadow: True for shadow rows only, False for live rows only.
        request_id: One request's rows.
        with_text: Only rows that stored their raw text.
        limit: Most rows returned (newest first).
    """

    since: float | None = None
    until: float | None = None
    tenant: str | None = None
    action: str | None = None
    guardrail: str | None = None
    policy: str | None = None
    shadow: bool | None = None
    request_id: str | None = None
    with_text: bool = False
    limit: int = 100


class AuditLog:
    """Asynchronous, batched writer plus reader of the audit table.

    Args:
        url: SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``).
        batch_size: Most rows inserted per transaction.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: when the database cannot be reached or
            the table cannot be created.
    """

    def __init__(self, url: str, batch_size: int = 200) -> None:
        self.url = url
        self.batch_size = batch_size
        self.engine = _engine(url)
        metadata.create_all(self.engine)
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._closed = False
        self.written = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="greenlist-audit", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (see :func:`make_record`); returns at once, never raises."""
        if self._closed:
            log.warning("audit log closed; dropping a record of request %s", row.get("request_id"))
            return
        self._queue.put(row)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued row is committed.

        Returns:
            True when the queue drained within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Flush, stop the writer thread and release the engine (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self.engine.dispose()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item] if item is not None else []
            stop = item is None
            while not stop and len(batch) < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                else:
                    batch.append(nxt)
            try:
                if batch:
                    self._insert(batch)
            finally:
                for _ in range(len(batch) + (1 if stop else 0)):
                    self._queue.task_done()
            if stop:
                return

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(decisions.insert(), batch)
                self.written += len(batch)
                return
            except Exception:  # noqa: BLE001 - retry, then log; the gateway keeps serving
                if attempt == 2:
                    self.failed += len(batch)
                    log.exception("audit log: %d records could not be written", len(batch))
                else:
                    time.sleep(0.2 * (attempt + 1))

    def query(self, q: AuditQuery | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Rows matching the filters, newest first (blocking; call from a thread in async code).

        Args:
            q: An :class:`AuditQuery`; or give its fields as keyword arguments.

        Returns:
            Dicts with the table's columns; ``guardrails`` decoded from JSON and
            ``time`` as an ISO 8601 UTC string.
        """
        q = q or AuditQuery(**filters)
        return query_engine(self.engine, q)


def query_engine(engine: Engine, q: AuditQuery) -> list[dict[str, Any]]:
    """Run :class:`AuditQuery` ``q`` on ``engine`` (see :meth:`AuditLog.query`)."""
    stmt = select(decisions)
    t = decisions.c
    if q.since is not None:
        stmt = stmt.where(t.ts >= q.since)
    if q.until is not None:
        stmt = stmt.where(t.ts < q.until)
    if q.tenant is not None:
        stmt = stmt.where(t.tenant == q.tenant)
    if q.action is not None:
        stmt = stmt.where(t.decision == q.action)
    if q.guardrail is not None:
        stmt = stmt.where(t.fired.like(f"%,{q.guardrail},%"))
    if q.policy is not None:
        stmt = stmt.where(t.policy == q.policy)
    if q.shadow is not None:
        stmt = stmt.where(t.shadow == q.shadow)
    if q.request_id is not None:
        stmt = stmt.where(t.request_id == q.request_id)
    if q.with_text:
        stmt = stmt.where(t.text.is_not(None))
    stmt = stmt.order_by(t.ts.desc(), t.id.desc()).limit(q.limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    for row in rows:
        row["guardrails"] = json.loads(row["guardrails"] or "[]")
        row["shadow"] = bool(row["shadow"])
        row["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row["ts"])) + f".{int(row['ts'] % 1 * 1000):03d}Z"
    return rows


def open_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url`` (SQLite in WAL mode) with the audit table created."""
    engine = _engine(url)
    metadata.create_all(engine)
    return engine


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
