"""The scan driver: read the input, skip what the output already holds, run the rest, write batch by batch.

The rows run in this process (:func:`run_local`, the default) or on a Ray cluster
(:func:`gateway.scan.ray_runner.run_ray`); either way this process writes each finished batch as an atomic part
(:class:`gateway.scan.io.ScanOutput`), calls the ``on_batch`` hook, and merges the parts into the output file
once every row is done.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.scan.io import ROW_ID, Rows, ScanOutput, read_rows
from gateway.scan.tasks import RowTask, TaskSpec, build_task, schema
from greenlist.clock import SYSTEM_CLOCK, Clock

Results = Generator[tuple[list[str], list[dict[str, Any]]], None, None]
"""Finished batches: (row ids, one result row per id)."""


@dataclass
class ScanSummary:
    """What a scan did.

    Attributes:
        output: The result file.
        rows_total: Rows in the input.
        rows_skipped: Rows already in the output before this run (not scanned again).
        rows_scanned: Rows scanned by this run.
        rows_written: Rows in the output file at the end.
        batches: Batches written by this run.
        seconds: Wall time of the run, loading the task included (seconds, from the clock).
        first_batch_s: Seconds until the first batch was written (loading + one batch), or None without any.
        errors: Rows of this run whose ``error`` column is set.
    """

    output: Path
    rows_total: int
    rows_skipped: int
    rows_scanned: int
    rows_written: int
    batches: int
    seconds: float
    first_batch_s: float | None
    errors: int

    @property
    def steady_rows_per_s(self) -> float | None:
        """Rows per second after the first batch (model loading and start-up excluded), or None when undefined."""
        if self.first_batch_s is None or self.batches < 2 or self.seconds <= self.first_batch_s:
            return None
        first = self.rows_scanned / self.batches  # batches are equal but the last
        return (self.rows_scanned - first) / (self.seconds - self.first_batch_s)


def run_local(
    pending: Rows, spec: TaskSpec, batch_size: int, factory: Callable[[TaskSpec], RowTask] = build_task
) -> Results:
    """Run ``pending`` in this process, ``batch_size`` rows at a time (the task is built once, here).

    Yields:
        (row ids, result rows) per batch, in input order.
    """
    task = factory(spec)
    for start in range(0, len(pending), batch_size):
        yield pending.ids[start : start + batch_size], task(pending.texts[start : start + batch_size])


def scan(
    input_path: Path,
    output: Path,
    spec: TaskSpec,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    batch_size: int = 64,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    factory: Callable[[TaskSpec], RowTask] = build_task,
) -> ScanSummary:
    """Scan every row of ``input_path`` not yet in ``output`` and write the results (resumable).

    Args:
        input_path: ``.jsonl``, ``.csv`` or ``.parquet`` input.
        output: The result ``.parquet`` file (parts in ``<output>.parts/`` until the scan completes).
        spec: The task.
        text_column: The input column holding the text.
        id_column: A column of unique row ids; None: the row position.
        batch_size: Rows per batch (the unit of writing, and of a Ray ``map_batches`` call).
        ray: Run on Ray (``ray_address``, or a local Ray started here when None).
        ray_address: A Ray cluster address (``ray://host:10001`` or ``auto``).
        workers: Ray workers, each with one model copy (default: the cluster's CPU count).
        progress: Show a progress bar (tqdm, on stderr).
        on_batch: Called after each batch is written with (batches written, rows scanned) by this run; an
            exception it raises stops the scan with everything written so far kept (tests interrupt with it).
        clock: Source of the timings.
        factory: Builds the row function from ``spec`` (in-process runs; tests inject doubles).

    Returns:
        The :class:`ScanSummary`.

    Raises:
        gateway.scan.io.ScanInputError: unreadable input, or an output written by another task.
        ValueError: ``batch_size`` < 1.
        RuntimeError: ``ray=True`` without Ray installed.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    started = clock.monotonic()
    rows = read_rows(input_path, text_column, id_column)
    out = ScanOutput(output, spec.task, schema(spec.task))
    done = out.done_ids()
    keep = [i for i, row_id in enumerate(rows.ids) if row_id not in done]
    pending = Rows([rows.ids[i] for i in keep], [rows.texts[i] for i in keep])
    if ray:
        from gateway.scan.ray_runner import run_ray

        results = run_ray(pending, spec, batch_size, ray_address, workers)
    else:
        results = run_local(pending, spec, batch_size, factory)
    batches = scanned = errors = 0
    first: float | None = None
    with (
        closing(results),
        tqdm(
            total=len(rows),
            initial=len(rows) - len(pending),
            disable=not progress,
            unit="row",
            desc=f"scan {spec.task}",
        ) as bar,
    ):
        for ids, result_rows in results:
            out.write([{ROW_ID: row_id, **row} for row_id, row in zip(ids, result_rows, strict=True)])
            batches, scanned = batches + 1, scanned + len(ids)
            errors += sum(row["error"] is not None for row in result_rows)
            first = clock.monotonic() - started if first is None else first
            bar.update(len(ids))
            if on_batch is not None:
                on_batch(batches, scanned)
    written = out.finish()
    return ScanSummary(
        output,
        len(rows),
        len(rows) - len(pending),
        scanned,
        written,
        batches,
        clock.monotonic() - started,
        first,
        errors,
    )
