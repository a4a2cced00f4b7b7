"""Load and soak test on loopback: many clients on moderations and verification, concurrent streamed generations.

Starts ``greenlist serve`` on a free loopback port (or uses ``--url``), then for
``--warmup`` + ``--duration`` seconds runs

* ``--clients`` concurrent clients, each alternating ``POST /v1/moderations``
  and ``POST /v1/watermark/verify`` back to back;
* ``--streams`` concurrent clients, each running streamed chat completions
  (``max_tokens`` = ``--max-tokens``) back to back.

It reports per endpoint the request count, status codes and p50/p95/p99
latency (measured after warm-up), counts errors (anything but 2xx and the
intended 429), samples the server's RSS every 2 s (growth after warm-up), and,
when the server's audit log is a local SQLite file, compares the number of
audited decisions with the requests made. Loopback only; bounded in time
(every request has a timeout, stragglers are awaited at most 120 s).

Usage::

    python -m benchmarks.load_test --duration 60 --clients 100 --streams 16 --json docs/load_result.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

MODERATION_TEXTS = [
    "Thanks for the quick answer, that solved my problem.",
    "You are a worthless idiot and everyone hates you.",
    "The lighthouse keeper climbed the stairs every evening at dusk.",
    "Shut up, you stupid moron.",
    "Could you recommend a good book about the history of navigation?",
    "I will find you and make you regret this.",
]
VERIFY_TEXTS = [
    "The committee met on Tuesday to review the proposal, and after a long discussion the members agreed to "
    "postpone the vote until the budget figures had been checked by an independent auditor.",
    "Lighthouses have guided sailors for centuries. Early towers burned wood or coal; later ones used oil lamps "
    "and Fresnel lenses that could throw a beam more than twenty miles out to sea.",
    "To make bread, mix flour, water, salt and yeast, knead the dough until it is smooth, let it rise for an hour, "
    "shape it, let it rise again and bake it in a hot oven until the crust is brown.",
]
PROMPTS = [
    "Tell me about lighthouses.",
    "Write two sentences about the sea.",
    "Give me a tip for learning Python.",
    "Describe a sunny morning.",
    "What is a watermark?",
]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Stats:
    """Latencies and status codes per endpoint, split at the end of warm-up."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.errors: list[str] = []
        self.measuring = False
        self.ok_requests: Counter = Counter()

    def record(self, endpoint: str, status: int | str, seconds: float, detail: str = "") -> None:
        """Record one request (latency only once warm-up is over)."""
        self.status[endpoint][status] += 1
        if isinstance(status, int) and 200 <= status < 300:
            self.ok_requests[endpoint] += 1
        if self.measuring and status == 200:
            self.latency[endpoint].append(seconds)
        if status != 200 and status != 429:
            self.errors.append(f"{endpoint}: {status} {detail[:200]}")


async def _moderate_verify(client: httpx.AsyncClient, stats: Stats, stop: float, rng: random.Random) -> None:
    turn = rng.randrange(2)
    while time.monotonic() < stop:
        if turn % 2 == 0:
            endpoint, body = "/v1/moderations", {"input": rng.choice(MODERATION_TEXTS)}
        else:
            endpoint, body = "/v1/watermark/verify", {"text": rng.choice(VERIFY_TEXTS)}
        turn += 1
        start = time.perf_counter()
        try:
            r = await client.post(endpoint, json=body)
            stats.record(endpoint, r.status_code, time.perf_counter() - start, r.text)
            if r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        except httpx.HTTPError as exc:
            stats.record(endpoint, type(exc).__name__, time.perf_counter() - start)


async def _stream(
    client: httpx.AsyncClient, stats: Stats, stop: float, rng: random.Random, model: str, max_tokens: int
) -> None:
    endpoint = "/v1/chat/completions (stream)"
    while time.monotonic() < stop:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "max_tokens": max_tokens,
            "stream": True,
        }
        start = time.perf_counter()
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                if r.status_code != 200:
                    text = (await r.aread()).decode("utf-8", "replace")
                    stats.record(endpoint, r.status_code, time.perf_counter() - start, text)
                    if r.status_code == 429:
                        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
            if not lines or lines[-1] != "data: [DONE]" or any('"error"' in line[:20] for line in lines):
                stats.record(endpoint, "broken_stream", time.perf_counter() - start, lines[-1] if lines else "")
            else:
                stats.record(endpoint, 200, time.perf_counter() - start)
        except httpx.HTTPError as exc:
            stats.record(endpoint, type(exc).__name__, time.perf_counter() - start)


def _rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _audit_counts(home: Path) -> dict[str, int] | None:
    db = home / "audit.db"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db) as conn:
            return dict(conn.execute("SELECT endpoint, COUNT(*) FROM greenlist_decisions GROUP BY endpoint").fetchall())
    except sqlite3.Error:
        return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load test; return the summary."""
    proc = None
    home = Path(args.home or os.environ.get("GREENLIST_HOME") or Path.home() / ".greenlist")
    url = args.url
    if url is None:
        port = _free_port()
        env = {
            **os.environ,
            "GREENLIST_HOME": str(home),
            "GREENLIST_GENERATION_QUEUE_TIMEOUT_S": str(args.queue_timeout),
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("the load test runs on loopback only")
    limits = httpx.Limits(
        max_connections=args.clients + args.streams + 8, max_keepalive_connections=args.clients + args.streams + 8
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
            deadline = time.monotonic() + 600
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                    raise SystemExit("server did not become ready")
                await asyncio.sleep(0.5)
            model = (await client.get("/v1/models")).json()["data"][0]["id"]
            audit_before = _audit_counts(home) if proc is not None else None
            stats = Stats()
            rng = random.Random(7)
            start = time.monotonic()
            stop = start + args.warmup + args.duration
            tasks = [
                asyncio.create_task(_moderate_verify(client, stats, stop, random.Random(rng.random())))
                for _ in range(args.clients)
            ]
            tasks += [
                asyncio.create_task(_stream(client, stats, stop, random.Random(rng.random()), model, args.max_tokens))
                for _ in range(args.streams)
            ]
            rss: list[tuple[float, int]] = []
            baseline = None
            while time.monotonic() < stop:
                await asyncio.sleep(2.0)
                if proc is not None:
                    rss.append((time.monotonic() - start, _rss(proc.pid)))
                if not stats.measuring and time.monotonic() - start >= args.warmup:
                    stats.measuring = True
                    baseline = rss[-1][1] if rss else None
            _, pending = await asyncio.wait(tasks, timeout=120)
            for t in pending:
                t.cancel()
            elapsed = time.monotonic() - start
            await asyncio.sleep(3.0)  # let the audit writer flush
            audit_after = _audit_counts(home) if proc is not None else None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    endpoints = {}
    for endpoint, codes in stats.status.items():
        lat = stats.latency[endpoint]
        endpoints[endpoint] = {
            "requests": sum(codes.values()),
            "status": {str(k): v for k, v in codes.items()},
            "measured": len(lat),
            "p50_ms": round(percentile(lat, 50) * 1000, 1),
            "p95_ms": round(percentile(lat, 95) * 1000, 1),
            "p99_ms": round(percentile(lat, 99) * 1000, 1),
            "throughput_rps": round(len(lat) / args.duration, 2),
        }
    summary: dict[str, Any] = {
        "config": {
            "clients": args.clients,
            "streams": args.streams,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "max_tokens": args.max_tokens,
            "elapsed_s": round(elapsed, 1),
        },
        "endpoints": endpoints,
        "errors": len(stats.errors),
        "error_samples": stats.errors[:10],
        "rejected_429": sum(c.get(429, 0) for c in stats.status.values()),
    }
    if rss and baseline:
        final = rss[-1][1]
        summary["rss_mb"] = {
            "after_warmup": round(baseline / 2**20, 1),
            "final": round(final / 2**20, 1),
            "max": round(max(v for _, v in rss) / 2**20, 1),
            "growth_pct_after_warmup": round(100 * (final - baseline) / baseline, 2),
        }
    if audit_after is not None:
        before = audit_before or {}
        summary["audit"] = {k: audit_after.get(k, 0) - before.get(k, 0) for k in audit_after}
        summary["audit_note"] = (
            "audited decisions per endpoint during the run (a completion records its input "
            "and output checks); compare with the 2xx counts"
        )
        summary["ok_requests"] = dict(stats.ok_requests)
    return summary


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running gateway on loopback (default: start one)")
    parser.add_argument("--home", help="GREENLIST_HOME for the started server")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (after warm-up)")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=100, help="moderation/verify clients")
    parser.add_argument("--streams", type=int, default=16, help="streamed-generation clients")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    parser.add_argument("--queue-timeout", type=float, default=60.0, help="server's generation_queue_timeout_s")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
