"""Per-sentence latency of the multilingual toxicity models on this machine.

    python benchmarks/bench_toxicity_e5.py [--models multilingual-e5,multilingual-e5:float32,multilingual-v2,default]

Each model scores the sentences of Greenlist's multilingual test set (``examples/multilingual_test.tsv``, 13
languages) one text per call after a warm-up, through the guardrail as traffic is scored (no unit cache), and
the p50 / p95 wall time per call is printed as a markdown table. A ``:precision`` suffix picks the encoder
precision (as in :mod:`guardrails.toxicity.training.evaluate`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardrails.toxicity.training.evaluate import guardrail  # noqa: E402
from guardrails.toxicity.training.multilingual import read_test_set  # noqa: E402


def measure(model: str, texts: list[str], warmup: int = 20) -> dict[str, float]:
    """p50 / p95 milliseconds of one ``score`` call per text under ``model``.

    Args:
        model: A model name, optionally ``name:precision``.
        texts: The texts, scored one per call.
        warmup: Calls made first and not timed.

    Returns:
        ``{"p50_ms", "p95_ms", "n"}``.
    """
    g = guardrail(model)
    for t in texts[:warmup]:
        g.score(t)
    times = []
    for t in texts:
        t0 = time.perf_counter()
        g.score(t)
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=20)
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(q[18], 2), "n": len(times)}


def main(argv: list[str] | None = None) -> None:
    """Command line: ``[--models a,b,...] [--per-language N]``; prints a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="multilingual-e5,multilingual-e5:float32,multilingual-v2,default")
    ap.add_argument("--per-language", type=int, default=20)
    a = ap.parse_args(argv)
    rows = read_test_set()
    texts = []
    for lang in sorted({r["lang"] for r in rows}):
        texts += [r["text"] for r in rows if r["lang"] == lang][: a.per_language]
    print("| model | p50 ms / sentence | p95 ms | sentences |\n|---|---|---|---|")
    for m in a.models.split(","):
        r = measure(m, texts)
        print(f"| {m} | {r['p50_ms']} | {r['p95_ms']} | {r['n']} |", flush=True)


if __name__ == "__main__":
    main()
