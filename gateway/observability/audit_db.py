"""The audit table and its database: schema, engines (SQLite in WAL mode, PostgreSQL), idempotent inserts.

Used by :mod:`gateway.observability.audit` (writer and reader) and ``greenlist audit query``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text, create_engine, event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine

metadata = MetaData()

decisions = Table(
    "greenlist_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_id", String(32), unique=True),  # idempotent inserts: a replayed record is never duplicated
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


SCHEMA_LOCK = 0x67726E6C  # "grnl": PostgreSQL advisory-lock key of the schema step
"""Replicas starting together against one PostgreSQL serialise their ``CREATE TABLE`` on this lock: without it
two concurrent ``create_all`` both see no table and the second fails on ``pg_type``'s unique key."""


def open_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url`` (SQLite in WAL mode) with the audit table created (and migrated).

    A table made before ``record_id`` existed gets the column and its unique index added. On PostgreSQL the
    schema step holds a transaction-level advisory lock (:data:`SCHEMA_LOCK`), so replicas may start at once.
    """
    engine = _engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        metadata.create_all(conn)
        columns = {c["name"] for c in sa_inspect(conn).get_columns(decisions.name)}
        if "record_id" not in columns:
            conn.execute(sql_text(f"ALTER TABLE {decisions.name} ADD COLUMN record_id VARCHAR(32)"))
            conn.execute(
                sql_text(
                    f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{decisions.name}_record_id ON {decisions.name} (record_id)"
                )
            )
    return engine


def _idempotent_insert(engine: Engine) -> Any:
    """``INSERT ... ON CONFLICT (record_id) DO NOTHING`` in the engine's dialect (plain insert elsewhere)."""
    name = engine.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(decisions).on_conflict_do_nothing(index_elements=["record_id"])
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(decisions).on_conflict_do_nothing(index_elements=["record_id"])
    return decisions.insert()


def _default_spill_dir(url: str) -> Path:
    """Beside a SQLite database file (``<db>.spill``), else a per-process temporary folder."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            return Path(path + ".spill")
    return Path(tempfile.mkdtemp(prefix="greenlist-audit-spill-"))


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
    connect_args = {"connect_timeout": 3} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
