"""Scanning on a Ray cluster: Ray Data ``map_batches`` over a callable class, one model copy per worker.

The pending rows (id + text) are split into blocks of ``batch_size`` rows (``ray.data.from_arrow``); an actor pool
of ``workers`` :class:`ScanWorker` actors, each building the task once in its constructor, maps them; this process
receives each finished block as it completes and writes it (:func:`gateway.scan.runner.scan`). Results come back
as JSON strings so that rows whose columns are null (errors) never clash with Arrow's type inference.

``ray.init(address)`` joins a cluster (greenlist must be installed on its nodes, ``GREENLIST_HOME`` set there and
holding the same keys and policy); with no address a local Ray is started here (workers import this checkout and
inherit the ``GREENLIST_*`` variables) and shut down at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gateway.scan.io import ROW_ID, Rows
from gateway.scan.runner import Results
from gateway.scan.tasks import TaskSpec, build_task

ROOT = Path(__file__).resolve().parents[2]  # the folder holding gateway/, guardrails/, watermark/, greenlist/


class ScanWorker:
    """A Ray Data actor: builds the task once (models loaded once per worker), then maps blocks of rows.

    Args:
        spec: The task to build.
    """

    def __init__(self, spec: TaskSpec) -> None:
        self.task = build_task(spec)

    def __call__(self, batch: Any) -> Any:
        """One block: a ``pyarrow.Table`` with ``row_id`` and ``text`` -> a table with ``row_id`` and ``row`` (JSON)."""
        import pyarrow as pa

        rows = self.task(batch.column("text").to_pylist())
        return pa.table({ROW_ID: batch.column(ROW_ID), "row": [json.dumps(r) for r in rows]})


def _init(ray: Any, address: str | None, workers: int | None) -> bool:
    """Connect to ``address`` or start a local Ray; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {k: v for k, v in os.environ.items() if k.startswith("GREENLIST_")}
    ray.init(
        num_cpus=max(workers or 0, os.cpu_count() or 1),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**env, "PYTHONPATH": os.pathsep.join(paths)}},
    )
    return True


def run_ray(
    pending: Rows, spec: TaskSpec, batch_size: int, address: str | None = None, workers: int | None = None
) -> Results:
    """Run ``pending`` on Ray with ``workers`` actors (default: the cluster's CPUs), ``batch_size`` rows a block.

    Yields:
        (row ids, result rows) per finished block, in completion order.

    Raises:
        RuntimeError: when Ray is not installed (``pip install 'greenlist[scan]'``).
    """
    try:
        import pyarrow as pa
        import ray
        import ray.data
    except ImportError:
        raise RuntimeError("--ray needs Ray Data: pip install 'greenlist[scan]' (ray[data])") from None
    if not len(pending):
        return
    started_here = _init(ray, address, workers)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours is on the driver
        pool = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        blocks = [
            pa.table({ROW_ID: pending.ids[s : s + batch_size], "text": pending.texts[s : s + batch_size]})
            for s in range(0, len(pending), batch_size)
        ]
        dataset = ray.data.from_arrow(blocks).map_batches(
            ScanWorker,
            fn_constructor_kwargs={"spec": spec},
            batch_size=batch_size,
            batch_format="pyarrow",
            concurrency=pool,
            num_cpus=1,
        )
        block: Any
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield block.column(ROW_ID).to_pylist(), [json.loads(r) for r in block.column("row").to_pylist()]
    finally:
        if started_here:
            ray.shutdown()
