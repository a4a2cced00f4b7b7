"""The audit log's spill file: records that could not reach the database wait here, in order, on local disk.

An append-only JSON-lines file (``spill.jsonl``) and a small cursor file (``spill.offset``, the byte offset
up to which records have been written to the database). Replay reads from the cursor, inserts a chunk
(idempotently: every record carries a unique ``record_id``), then advances the cursor; a crash between the
two re-inserts a chunk the database already holds, which the idempotent insert ignores. Once everything is
replayed both files are emptied.

One spill directory belongs to one process (a replica's local disk, never a shared volume).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class SpillFile:
    """Append-only spill of audit records with a replay cursor (see module doc).

    Args:
        directory: Where ``spill.jsonl`` and ``spill.offset`` live (created, mode 0700).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / "spill.jsonl"
        self.cursor_path = self.directory / "spill.offset"
        self._lock = threading.Lock()
        self.pending = self._count_pending()

    def _offset(self) -> int:
        try:
            return int(self.cursor_path.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def _count_pending(self) -> int:
        if not self.path.exists():
            return 0
        with self.path.open("rb") as fh:
            fh.seek(self._offset())
            return sum(1 for line in fh if line.strip())

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append ``rows`` (flushed and fsynced before returning); return how many were written."""
        data = "".join(json.dumps(r, default=str) + "\n" for r in rows)
        if not data:
            return 0
        n = data.count("\n")
        with self._lock:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self.pending += n
        return n

    def replay(self, insert: Callable[[list[dict[str, Any]]], None], chunk: int = 500) -> int:
        """Insert spilled records in file order, ``chunk`` at a time, advancing the cursor after each.

        Args:
            insert: Writes a list of rows to the database idempotently; raises when it cannot.
            chunk: Rows per call of ``insert``.

        Returns:
            How many records were replayed (all of them unless ``insert`` raised).

        Raises:
            Exception: whatever ``insert`` raises; the cursor stays before the failed chunk.
        """
        done = 0
        offset = self._offset()
        while True:
            rows, end = self._read_chunk(offset, chunk)
            if not rows:
                break
            insert(rows)
            offset = end
            self._write_offset(offset)
            done += len(rows)
            with self._lock:
                self.pending = max(0, self.pending - len(rows))
        with self._lock:  # everything replayed and nobody appended meanwhile: start both files afresh
            if self.path.exists() and self.path.stat().st_size == offset:
                self.path.write_bytes(b"")
                self._write_offset(0)
                self.pending = 0
        return done

    def _read_chunk(self, offset: int, chunk: int) -> tuple[list[dict[str, Any]], int]:
        if not self.path.exists():
            return [], offset
        rows: list[dict[str, Any]] = []
        with self.path.open("rb") as fh:
            fh.seek(offset)
            while len(rows) < chunk:
                line = fh.readline()
                if not line or not line.endswith(b"\n"):  # end, or a line still being written
                    break
                offset += len(line)
                if line.strip():
                    rows.append(json.loads(line))
        return rows, offset

    def _write_offset(self, offset: int) -> None:
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.cursor_path)
