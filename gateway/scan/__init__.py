"""Batch scanning of whole datasets (``greenlist scan``): the HTTP endpoints' verdicts, row for row, resumable.

=================  ==============================================================================
:mod:`.io`         reading JSONL / CSV / Parquet with stable row ids; atomic, resumable Parquet output
:mod:`.tasks`      the per-row tasks (verify, moderate, guardrails), built once per process or worker
:mod:`.runner`     the driver (:func:`scan`) and the in-process runner
:mod:`.ray_runner` the Ray Data runner (``map_batches`` over a callable class)
=================  ==============================================================================
"""

from __future__ import annotations

from gateway.scan.io import ScanInputError, read_rows
from gateway.scan.runner import ScanSummary, scan
from gateway.scan.tasks import TASKS, TaskSpec, build_task

__all__ = ["TASKS", "ScanInputError", "ScanSummary", "TaskSpec", "build_task", "read_rows", "scan"]
