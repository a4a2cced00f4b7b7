"""Reading a dataset to scan (JSONL, CSV, Parquet) and writing the results resumably (Parquet).

Every input row gets a stable **row id**: the value of ``id_column`` when one is named (it must be unique), else
its 0-based position in the file (data rows of a CSV, non-blank lines of a JSONL file, rows of a Parquet file), so
the same file read again gives the same ids.

:class:`ScanOutput` writes results in batches, each an atomic Parquet *part* (written to a temporary name, then
renamed) in ``OUT.parquet.parts/``: an interrupted run loses at most the batch in flight. The ids already written
(in ``OUT.parquet`` and in the parts) are skipped by the next run. When every row is done the parts are merged into
``OUT.parquet`` (again through a temporary file and a rename) and the folder is removed; rows are unique by id.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROW_ID = "row_id"
TASK_METADATA = b"greenlist.scan.task"
FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class ScanInputError(ValueError):
    """The input cannot be scanned: unknown format, no such text column, bad JSON line, duplicate ids."""


@dataclass
class Rows:
    """Rows to scan, in input order.

    Attributes:
        ids: The row ids (strings), unique.
        texts: The texts, one per id (a null text reads as ``""``).
    """

    ids: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def input_format(path: Path) -> str:
    """``jsonl``, ``csv`` or ``parquet``, from the file suffix.

    Raises:
        ScanInputError: for any other suffix.
    """
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ScanInputError(f"{path}: unknown input format {path.suffix!r}; use .jsonl, .csv or .parquet")
    return fmt


def _records(path: Path, fmt: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        raise ScanInputError(f"{path}:{n}: not a JSON line ({exc})") from None
                    if not isinstance(record, dict):
                        raise ScanInputError(f"{path}:{n}: a JSON object per line is expected")
                    yield record
    elif fmt == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f)
    else:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise ScanInputError(f"{path}: no column {missing[0]!r}; columns: {parquet.schema_arrow.names}")
        for batch in parquet.iter_batches(columns=columns):
            yield from batch.to_pylist()


def read_rows(path: Path, text_column: str = "text", id_column: str | None = None) -> Rows:
    """Every row of ``path`` with its row id and text.

    Args:
        path: A ``.jsonl``, ``.csv`` or ``.parquet`` file.
        text_column: The column (JSON field) holding the text.
        id_column: A column of unique row ids; None numbers the rows from 0.

    Returns:
        The rows, in file order.

    Raises:
        ScanInputError: unknown format, a row without the text (or id) column, a bad JSON line, a duplicate id.
        OSError: when the file cannot be read.
    """
    fmt = input_format(path)
    columns = [text_column] + ([id_column] if id_column else [])
    rows = Rows([], [])
    seen: set[str] = set()
    for n, record in enumerate(_records(path, fmt, columns)):
        for column in columns:
            if column not in record:
                raise ScanInputError(f"{path}: row {n} has no column {column!r}; it has {sorted(record)}")
        row_id = str(record[id_column]) if id_column else str(n)
        if row_id in seen:
            raise ScanInputError(f"{path}: row {n}: duplicate id {row_id!r} in column {id_column!r}")
        seen.add(row_id)
        text = record[text_column]
        rows.ids.append(row_id)
        rows.texts.append("" if text is None else str(text))
    return rows


class ScanOutput:
    """The result file ``path`` of one task, written in atomic batches and merged at the end (module docstring).

    Args:
        path: The final Parquet file, e.g. ``out.parquet``; parts go to ``out.parquet.parts/``.
        task: The task name recorded in the file metadata; resuming a file of another task is refused.
        schema: The ``pyarrow`` schema of the rows (``row_id`` first).
    """

    def __init__(self, path: Path, task: str, schema: Any) -> None:
        self.path, self.task = path, task
        self.schema = schema.with_metadata({TASK_METADATA: task.encode()})
        self.parts = path.with_name(path.name + ".parts")
        self._next_part: int | None = None

    def _files(self) -> list[Path]:
        parts = sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []
        return ([self.path] if self.path.exists() else []) + parts

    def done_ids(self) -> set[str]:
        """Row ids already written (final file and parts).

        Raises:
            ScanInputError: when an existing file was written by another task.
        """
        import pyarrow.parquet as pq

        done: set[str] = set()
        for file in self._files():
            meta = pq.read_schema(file).metadata or {}
            if meta.get(TASK_METADATA, self.task.encode()) != self.task.encode():
                raise ScanInputError(
                    f"{file} holds results of task {meta[TASK_METADATA].decode()!r}, "
                    f"not {self.task!r}; choose another --output"
                )
            done.update(pq.read_table(file, columns=[ROW_ID]).column(ROW_ID).to_pylist())
        return done

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Write one batch of result rows (dicts with every schema column) as a new atomic part."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.parts.mkdir(parents=True, exist_ok=True)
        if self._next_part is None:  # listed once per run, then counted
            numbers = [int(p.stem.split("-")[1]) for p in self.parts.glob("part-*.parquet")]
            self._next_part = max(numbers, default=-1) + 1
        final = self.parts / f"part-{self._next_part:06d}.parquet"
        self._next_part += 1
        tmp = final.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), tmp)
        os.replace(tmp, final)

    def finish(self) -> int:
        """Merge the final file and the parts into ``path`` (unique ids, input order kept per part); remove parts.

        Returns:
            The number of rows in ``path``.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = self._files()
        if files == [self.path]:
            return pq.read_metadata(self.path).num_rows
        tables = [pq.read_table(f).cast(self.schema) for f in files]
        merged = pa.concat_tables(tables) if tables else self.schema.empty_table()
        ids = merged.column(ROW_ID).to_pylist()
        first = {row_id: i for i, row_id in reversed(list(enumerate(ids)))}  # a row written twice is kept once
        if len(first) != len(ids):
            merged = merged.take(sorted(first.values()))
        tmp = self.path.with_name(self.path.name + ".tmp")
        pq.write_table(merged, tmp)
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
        self._next_part = None
        return merged.num_rows
