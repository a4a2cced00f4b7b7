"""Foundation benchmark: generation speed with and without the watermark, verification speed, guardrail latency.

Run ``python benchmarks/bench_gateway.py`` (about 5 minutes on 2 cores); it
writes the section "Gateway" of ``docs/benchmarks.md``.

* Generation: the same prompts, sampled with the same seeds, alternately with
  and without the watermark processor, in one run on the embedded model.
* Verification: ``Gateway.verify`` (normalise, tokenize, z-test) on texts of
  1,000 tokens; time per 1,000 tokens.
* Guardrail latency: the default policy's input and output checks
  (``Pipeline.check``) on real prompts and ~150-word outputs, p50/p95 per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, write_section  # noqa: E402
from gateway.backends.base import GenerationRequest  # noqa: E402
from gateway.service import Gateway  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from guardrails import Direction  # noqa: E402

PROMPTS = [
    "Write a story about a lighthouse keeper.",
    "Explain how rain forms.",
    "Describe a busy market in the morning.",
    "Give advice to someone starting to learn the piano.",
]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0-1) of ``values``."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_generation(gw: Gateway, tokens: int, rounds: int) -> dict[str, float]:
    """Tokens/s with and without the watermark, alternating on identical requests."""
    rates: dict[str, list[float]] = {"watermark": [], "plain": []}
    for r in range(rounds):
        for prompt in PROMPTS:
            for kind in ("plain", "watermark") if r % 2 else ("watermark", "plain"):
                req = GenerationRequest(model="m", messages=[{"role": "user", "content": prompt}], max_tokens=tokens,
                                        temperature=1.0, seed=r, watermark_delta=2.0 if kind == "watermark" else None)
                start = time.perf_counter()
                out = asyncio.run(gw.backend.generate(req))
                rates[kind].append(out.completion_tokens / (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in rates.items()}


def bench_verify(gw: Gateway, human: list[str]) -> float:
    """Milliseconds per 1,000 tokens of ``Gateway.verify``."""
    text = " ".join(human)
    ids = gw.verifier.tokenizer(text, add_special_tokens=False)["input_ids"][:5000]
    chunks = [gw.verifier.tokenizer.decode(ids[i:i + 1000]) for i in range(0, 5000, 1000)]
    times = []
    for _ in range(20):
        for chunk in chunks:
            start = time.perf_counter()
            gw.verifier.verify(chunk)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_guardrails(gw: Gateway, human: list[str]) -> dict[str, float]:
    """p50/p95 ms of the default policy's input + output checks per request."""
    prompts = [t[:200] for t in human[:100]]
    outputs = [" ".join(t.split()[:150]) for t in human[100:200]]

    async def run() -> list[float]:
        times = []
        for prompt, output in zip(prompts, outputs):
            start = time.perf_counter()
            await gw.pipeline.check(prompt, Direction.INPUT)
            await gw.pipeline.check(output, Direction.OUTPUT)
            times.append((time.perf_counter() - start) * 1000)
        return times

    asyncio.run(run())  # warm-up
    times = asyncio.run(run())
    return {"p50": pct(times, 0.5), "p95": pct(times, 0.95)}


def main() -> None:
    """Run all three measurements and write the docs section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per generation")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the prompts")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    gw = Gateway.start(Settings())
    human = [json.loads(l)["text"] for l in open(ROOT.parent / "shared/data/human_text/british_novels.jsonl")][:400]
    gen = bench_generation(gw, args.tokens, args.rounds)
    verify_ms = bench_verify(gw, human)
    guard = bench_guardrails(gw, human)
    overhead = (gen["plain"] / gen["watermark"] - 1) * 100
    body = f"""{machine()}
Command: `python benchmarks/bench_gateway.py` (embedded SmolLM2-135M-Instruct, fp32, transformers `generate`; default policy).

| measurement | value |
|---|---|
| generation, no watermark (median of {len(PROMPTS) * args.rounds} runs, {args.tokens} new tokens, sampled) | {gen['plain']:.1f} tokens/s |
| generation, watermark (selfhash, γ=0.25, δ=2.0; same prompts and seeds) | {gen['watermark']:.1f} tokens/s |
| watermark overhead on generation time | {overhead:+.1f}% |
| verification (normalise + tokenize + z-test), per 1,000 tokens, median | {verify_ms:.2f} ms |
| guardrail latency per request (input + output toxicity checks), p50 | {guard['p50']:.1f} ms |
| guardrail latency per request, p95 | {guard['p95']:.1f} ms |
"""
    print(body)
    if not args.no_write:
        write_section("Gateway", body)


if __name__ == "__main__":
    main()
