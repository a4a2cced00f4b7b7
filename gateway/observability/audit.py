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

Writes never block the event loop and nothing is lost: :meth:`AuditLog.record` puts the row on a bounded
queue (``audit_queue_size``) and a background thread inserts in batches. When the database is slow or down
(an insert fails), or the queue is full, rows go to a local append-only spill file
(:mod:`gateway.observability.spill`); while anything is spilled, new batches are spilled behind it, so the
order is kept, and the spill is replayed in order once the database answers again. Every row carries a
unique ``record_id`` and inserts skip ids already present (``ON CONFLICT DO NOTHING`` on PostgreSQL and
SQLite), so a replay interrupted half-way never duplicates a record. :meth:`AuditLog.flush` waits until
everything is committed; :meth:`AuditLog.close` commits or spills what is queued and stops the thread (the
app calls it on shutdown). Back-pressure is visible in ``/metrics`` (``greenlist_audit_queue_depth``,
``greenlist_audit_spilled_total``, ``greenlist_audit_replayed_total``, ``greenlist_audit_spill_pending``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from gateway.observability.audit_db import _default_spill_dir, _idempotent_insert, decisions, open_engine
from gateway.observability.metrics import AUDIT_QUEUE_DEPTH, AUDIT_REPLAYED, AUDIT_SPILL_PENDING, AUDIT_SPILLED
from gateway.observability.spill import SpillFile

log = logging.getLogger("greenlist.audit")

_COLUMNS = [c.name for c in decisions.columns]


def default_audit_url(home: Path) -> str:
    """SQLite URL of the default audit database, ``<home>/audit.db``."""
    return f"sqlite:///{Path(home) / 'audit.db'}"


def _slim(g: dict[str, Any]) -> dict[str, Any]:
    """One guardrail's entry in an audit row: its result, ``outcome`` (``error`` or the decision), details."""
    out: dict[str, Any] = {
        k: g.get(k) for k in ("name", "score", "decision", "action", "latency_ms", "error", "overrides") if k in g
    }
    out["outcome"] = "error" if g.get("error") else g.get("decision")
    details = g.get("details")
    if details:
        text = json.dumps(details, default=str)
        out["details"] = details if len(text) <= 4000 else {"truncated": text[:4000]}
    return out


def make_record(
    *,
    request_id: str,
    tenant: str | None,
    endpoint: str,
    direction: str,
    policy: str,
    policy_version: str,
    decision: str,
    guardrails: Iterable[dict[str, Any]],
    latency_ms: float,
    text: str,
    store_text: bool = False,
    shadow: bool = False,
    live_policy: str | None = None,
    enforced: str | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
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
        "record_id": uuid.uuid4().hex,
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
    """Asynchronous, batched, loss-free writer plus reader of the audit table (see the module doc).

    Args:
        url: SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``).
        batch_size: Most rows inserted per transaction.
        queue_size: Rows held in memory (``audit_queue_size``); beyond it rows are spilled at once.
        spill_dir: This process's spill directory (``None``: beside a SQLite file, else a temporary folder).
        retry_s: Seconds between attempts to reach a database that failed.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: when the database cannot be reached at start or the table cannot be
            created.
    """

    def __init__(
        self,
        url: str,
        batch_size: int = 200,
        queue_size: int = 10_000,
        spill_dir: Path | None = None,
        retry_s: float = 1.0,
    ) -> None:
        self.url, self.batch_size, self.retry_s = url, batch_size, retry_s
        self.engine = open_engine(url)
        self.spill = SpillFile(spill_dir or _default_spill_dir(url))
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._busy = threading.Event()  # set while the writer holds rows taken off the queue
        self.written = 0
        self.failed = 0  # kept for compatibility: rows are spilled, never dropped, so this stays 0
        self.spilled = 0
        self._down_until = 0.0
        self._thread = threading.Thread(target=self._run, name="greenlist-audit", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (see :func:`make_record`); returns at once, never raises; spills when the queue is full."""
        row.setdefault("record_id", uuid.uuid4().hex)
        if self._closed:
            self._spill([row])
            return
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self._spill([row])
        AUDIT_QUEUE_DEPTH.set(self._queue.qsize())

    @property
    def pending(self) -> int:
        """Rows not yet in the database: queued in memory plus waiting in the spill file."""
        return self._queue.qsize() + self.spill.pending + (1 if self._busy.is_set() else 0)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued and spilled row is committed.

        Returns:
            True when everything reached the database within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks or self.spill.pending:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued (or spill it when the database is down), stop the writer, release the engine.

        Idempotent. Spilled rows stay on disk and are replayed by the next start.
        """
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self.engine.dispose()

    def _spill(self, rows: list[dict[str, Any]]) -> None:
        n = self.spill.append(rows)
        self.spilled += n
        AUDIT_SPILLED.inc(n)
        AUDIT_SPILL_PENDING.set(self.spill.pending)

    def _take(self) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``batch_size`` rows from the queue (waiting at most ``retry_s`` for the first); True at stop."""
        try:
            item = self._queue.get(timeout=self.retry_s)
        except queue.Empty:
            return [], False
        self._busy.set()
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
        return batch, stop

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            try:
                self._write_or_spill(batch)
            finally:
                self._busy.clear()
                for _ in range(len(batch) + (1 if stop else 0)):
                    self._queue.task_done()
                AUDIT_QUEUE_DEPTH.set(self._queue.qsize())
            if stop:
                self._drain_on_stop()
                return

    def _write_or_spill(self, batch: list[dict[str, Any]]) -> None:
        """Replay the spill first (order), then insert ``batch``; on any failure spill it behind the rest."""
        if self.spill.pending and time.monotonic() >= self._down_until:
            try:
                replayed = self.spill.replay(self._insert)
                AUDIT_REPLAYED.inc(replayed)
                if replayed:
                    log.info("audit log: %d spilled records replayed to the database", replayed)
            except Exception as exc:  # noqa: BLE001 - the database is still down: try again later
                self._mark_down(exc)
            AUDIT_SPILL_PENDING.set(self.spill.pending)
        if not batch:
            return
        if self.spill.pending or time.monotonic() < self._down_until:
            self._spill(batch)
            return
        try:
            self._insert(batch)
        except Exception as exc:  # noqa: BLE001 - spill, the gateway keeps serving
            self._mark_down(exc)
            self._spill(batch)

    def _mark_down(self, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("audit database unavailable (%s); spilling to %s", type(exc).__name__, self.spill.path)
        self._down_until = time.monotonic() + self.retry_s

    def _drain_on_stop(self) -> None:
        """At close: one last attempt to replay and commit; whatever cannot be written stays spilled."""
        rest: list[dict[str, Any]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
            self._queue.task_done()
        self._down_until = 0.0
        self._write_or_spill(rest)

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        """Insert ``batch`` in one transaction, skipping record ids already present; raises on failure."""
        with self.engine.begin() as conn:
            conn.execute(_idempotent_insert(self.engine), batch)
        self.written += len(batch)

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
