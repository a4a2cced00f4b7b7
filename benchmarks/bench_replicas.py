"""One vs two gateway replicas: requests/s and p50/p95 latency of /v1/moderations (docs/benchmarks.md).

Starts a stub OpenAI-compatible upstream and `greenlist serve --backend openai` replicas (this checkout's code,
SQLite audit per replica, auth off), then sends the same moderation requests (one short text each, the
default policy's toxicity model) round-robin over the replicas from ``--concurrency`` client threads.

    python3 benchmarks/bench_replicas.py --requests 400 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import ServerThread  # noqa: E402
from tests.integration.test_cluster import Replica  # noqa: E402
from tests.reliability_fixtures import make_stub  # noqa: E402


def run(n_replicas: int, requests: int, concurrency: int, base: Path, upstream: str) -> dict[str, float]:
    """Start ``n_replicas`` replicas, warm them, time ``requests`` moderations; return rate and percentiles."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIST_")}
    env.update(
        {
            "GREENLIST_BACKEND": "openai",
            "GREENLIST_UPSTREAM_BASE_URL": upstream,
            "GREENLIST_AUTH": "off",
            "GREENLIST_POLICY_WATCH": "false",
        }
    )
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench{n_replicas}-", dir=base))
    replicas = [Replica(f"r{i}", run_dir, env) for i in range(n_replicas)]
    try:
        for r in replicas:
            r.wait_ready()
        clients = [httpx.Client(base_url=r.url, timeout=120) for r in replicas]

        def one(i: int) -> float:
            t0 = time.perf_counter()
            resp = clients[i % n_replicas].post(
                "/v1/moderations", json={"input": f"Lighthouses guide ships, note {i}."}
            )
            resp.raise_for_status()
            return time.perf_counter() - t0

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(4 * concurrency)))  # warm-up
            start = time.perf_counter()
            latencies = sorted(pool.map(one, range(requests)))
            wall = time.perf_counter() - start
        q = statistics.quantiles(latencies, n=100)
        return {"replicas": n_replicas, "rps": requests / wall, "p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000}
    finally:
        for r in replicas:
            r.stop()


def main() -> None:
    """Parse arguments, run one and two replicas, print a Markdown table row for each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    home = Path(os.environ.get("GREENLIST_HOME", Path.home() / ".greenlist"))
    os.environ["GREENLIST_HOME"] = str(home)  # Replica links $GREENLIST_HOME/models (tokenizer cache)
    base = Path(tempfile.mkdtemp(prefix="greenlist-bench-"))
    with ServerThread(make_stub()) as stub:
        for n in (1, 2):
            res = run(n, args.requests, args.concurrency, base, f"{stub.url}/ok/v1")
            print(f"| {n} | {res['rps']:.1f} | {res['p50_ms']:.0f} | {res['p95_ms']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
