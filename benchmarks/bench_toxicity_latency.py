"""Latency of the default policy's toxicity guardrails per request (sentence-level scoring).

Measures, with the entries of ``policies/default.yaml``: the input check of a 200-character prompt, the output
check of a 150-word answer with a cold unit cache (a new answer: every sentence scored), and the final
whole-text check of a streamed answer whose sentences were already scored (warm cache). p50 / p95 over
``--n`` requests, in milliseconds; each request uses a different answer (sentences drawn from a pool of
benign sentences, with a request number added so no two answers share a sentence).

    python3 -m benchmarks.bench_toxicity_latency [--n 60] [--context 3] [--precision float32]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

from gateway.policy.schema import load_policy
from guardrails.base import Direction
from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail

POOL = [
    "Lighthouses were built along dangerous coasts to warn ships away from rocks.",
    "Early towers burned wood or coal in an open fire at the top.",
    "The Fresnel lens bent the light into a narrow beam that could reach the horizon.",
    "Each lighthouse has its own pattern of flashes, so sailors can tell them apart.",
    "Keepers lived in small cottages beside the tower and climbed the stairs at night.",
    "Fog signals such as bells and horns helped when the light could not be seen.",
    "Most lighthouses are now automated and monitored from a control centre.",
    "Many old towers have become museums where visitors can climb to the lantern room.",
    "Photographers love them at sunset, when the white towers glow against the sea.",
    "The oldest surviving lighthouse in the world is the Tower of Hercules in Spain.",
]


def answer(i: int, words: int = 150) -> str:
    """A benign answer of about ``words`` words, unique to request ``i``."""
    rng = random.Random(i)
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        s = rng.choice(POOL)
        out.append(s[:-1] + f" in {1800 + rng.randrange(200)} (note {i}).")
    return " ".join(out)


def prompt(i: int) -> str:
    """A 200-character prompt unique to request ``i``."""
    return (
        f"Request {i}: could you please explain how lighthouses worked before electricity, and why each "
        f"one flashes in its own pattern? Keep it short, please, and friendly for a school project."
    )[:200]


def main() -> None:
    """Print p50 / p95 in ms (JSON)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--context", type=int, default=None, help="override context_sentences")
    ap.add_argument("--precision", default=None, help="override precision: auto | float32 | bfloat16")
    args = ap.parse_args()
    policy = load_policy("policies/default.yaml").policy
    entries = {
        d: next(e for e in getattr(policy, d) if e.type == "toxicity").model_dump(exclude_unset=True)
        for d in ("input", "output")
    }
    if args.context:
        entries = {d: {**e, "context_sentences": args.context} for d, e in entries.items()}
    if args.precision:
        entries = {d: {**e, "precision": args.precision} for d, e in entries.items()}
    gin, gout = (ToxicityGuardrail(ToxicityConfig(**entries[d])) for d in ("input", "output"))
    gin.scan("warm up", Direction.INPUT)
    gout.scan(answer(-1), Direction.OUTPUT)
    t_in, t_out, t_final = [], [], []
    for i in range(args.n):
        t0 = time.perf_counter()
        gin.scan(prompt(i), Direction.INPUT)
        t1 = time.perf_counter()
        text = answer(i)
        gout.scan(text, Direction.OUTPUT)
        t2 = time.perf_counter()
        gout.scan(text, Direction.OUTPUT)  # the final check after streaming: every sentence cached
        t3 = time.perf_counter()
        t_in.append(t1 - t0)
        t_out.append(t2 - t1)
        t_final.append(t3 - t2)

    def q(v: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(float(np.percentile(v, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(v, 95)) * 1000, 1),
        }

    total = [a + b for a, b in zip(t_in, t_out, strict=True)]
    print(
        json.dumps(
            {
                "n": args.n,
                "units_150_words": gout.score(answer(0))[0].units.__len__(),
                "input_200_chars": q(t_in),
                "output_150_words_cold": q(t_out),
                "output_final_check_cached": q(t_final),
                "input_plus_output": q(total),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
