"""Seeding schemes compared: detection power, robustness to word edits and false positives.

Run ``python benchmarks/bench_watermark_robust.py`` (one command; writes the
section "Watermark seeding schemes" of ``docs/benchmarks.md``). Generation is
the slow part (SmolLM2-135M on the CPU, one torch thread by default): each
batch of generations is cached under ``--cache`` as soon as it is made, so an
interrupted run resumes and a rerun only re-scores.

* Watermarked text: for each seeding scheme (``selfhash``, ``lefthash``,
  ``robust``) the embedded model continues the same prompts drawn from human
  text (sampled, top-k/top-p off, half at temperature 0.7 and half at 1.0,
  exactly 200 new tokens, γ = 0.25, δ = 2.0, the local
  :class:`~watermark.processor.WatermarkLogitsProcessor`).
* Scoring as a third party would: decode, normalise (NFC, format characters,
  homoglyphs: what ``Verifier`` does), re-tokenize, z-test with the scheme's
  detector (one key). TPR at ``z ≥ 4`` and of the verdict (exact binomial
  p-value ≤ α = P(Z ≥ 4)) for the first T = 50, 100, 200 tokens.
* Robustness at T = 200: 10% / 30% of the words deleted or substituted with
  random words of human text (the same edits for every scheme).
* False positives: every file of ``../shared/data/human_text/``, cut into
  non-overlapping windows of T tokens (all of the text), scored under each
  scheme with the same key.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_watermark import perturb, sample  # noqa: E402
from benchmarks.report import machine, markdown_table, shared_data, write_section  # noqa: E402
from gateway.backends.loading import load_causal_lm  # noqa: E402
from greenlist.home import greenlist_home  # noqa: E402
from greenlist.normalize import normalize  # noqa: E402
from watermark.detector import WatermarkDetector  # noqa: E402
from watermark.keys import WatermarkKey  # noqa: E402
from watermark.processor import WatermarkLogitsProcessor  # noqa: E402

HUMAN_DIR = shared_data("human_text")
KEY = WatermarkKey("bench", secret=b"benchmark-key-0123456789abcdef!!")
LENGTHS, NEW_TOKENS = (50, 100, 200), 200
GAMMA, DELTA = 0.25, 2.0  # defaults; --gamma / --delta override
SCHEMES = ("selfhash", "lefthash", "robust")
ATTACKS = (("substitute", 0.1), ("substitute", 0.3), ("delete", 0.1), ("delete", 0.3))


def human_rows() -> list[dict]:
    """Every row of every ``*.jsonl`` file in the human-text folder."""
    rows: list[dict] = []
    paths = sorted(HUMAN_DIR.glob("*.jsonl"))
    if not paths:
        raise SystemExit(f"no human text at {HUMAN_DIR} (clone the project beside ../shared)")
    for path in paths:
        rows.extend(json.loads(line) for line in path.open())
    return rows


def generate_cached(model, tok, prompts: list[str], scheme: str, batch: int, cache: Path) -> list[list[int]]:
    """Watermarked continuations (``NEW_TOKENS`` token ids each) of ``prompts`` under ``scheme``, cached per batch.

    The first half of the prompts is sampled at temperature 0.7, the second at 1.0; batch ``i`` is seeded with
    ``torch.manual_seed(i)``. ``cache`` (a JSON file) holds ``{"prompts": [...], "ids": [[...], ...]}``; generation
    resumes after the rows it holds when its prompts match.
    """
    done: list[list[int]] = []
    if cache.exists():
        data = json.loads(cache.read_text())
        if data["prompts"] == prompts[: len(data["prompts"])]:
            done = data["ids"]
    processor = WatermarkLogitsProcessor(KEY.scheme(GAMMA, scheme), DELTA)
    tok.padding_side = "left"
    half = len(prompts) // 2
    i = len(done)
    while i < len(prompts):
        stop = min(i + batch, half if i < half else len(prompts))
        temperature = 0.7 if i < half else 1.0
        chats = [
            tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in prompts[i:stop]
        ]
        enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(i)
        t0 = time.time()
        done.extend(sample(model, tok, enc, processor, temperature, NEW_TOKENS))
        i = stop
        cache.write_text(json.dumps({"prompts": prompts[:i], "ids": done}))
        print(f"  {scheme}: generated {i}/{len(prompts)} ({time.time() - t0:.0f} s for the batch)", flush=True)
    return done


def human_windows(tok, rows: list[dict], length: int) -> list[str]:
    """All non-overlapping windows of ``length`` tokens of each human document, decoded to text."""
    by_doc: dict[str, list[int]] = {}
    for row in rows:
        by_doc.setdefault(row.get("doc_id", row.get("id", "")), []).extend(
            tok(" " + row["text"], add_special_tokens=False)["input_ids"]
        )
    return [tok.decode(ids[s : s + length]) for ids in by_doc.values() for s in range(0, len(ids) - length + 1, length)]


def third_party_ids(tok, texts: list[str]) -> list[list[int]]:
    """Token ids of ``texts`` as ``Verifier.verify`` computes them (NFC + format characters + homoglyphs)."""
    return [tok(normalize(t, "NFC"), add_special_tokens=False)["input_ids"] for t in texts]


def score(detector: WatermarkDetector, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """z-scores and verdicts (True = watermarked; too short counts as not) of token sequences."""
    results = [detector.detect(i) for i in ids]
    return np.array([r.z_score for r in results]), np.array([bool(r.watermarked) for r in results])


def main() -> None:
    """Generate (or load) the watermarked texts, score everything and write the docs section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64, help="generations per scheme (half at T=0.7, half at 1.0)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    parser.add_argument("--cache", type=Path, default=None, help="generation cache (default $GREENLIST_HOME/bench)")
    parser.add_argument("--schemes", default="robust,selfhash,lefthash", help="generation order")
    parser.add_argument("--gamma", type=float, default=0.25)
    parser.add_argument("--delta", type=float, default=2.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", default="", help="appended to the machine line (e.g. 'CPU shared with other jobs')")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global GAMMA, DELTA  # noqa: PLW0603 - one setting for the whole run
    GAMMA, DELTA = args.gamma, args.delta
    suffix = "" if (GAMMA, DELTA) == (0.25, 2.0) else f"_g{GAMMA}_d{DELTA}"
    started = time.time()
    order = tuple(args.schemes.split(","))
    schemes = tuple(s for s in SCHEMES if s in order)  # table order
    cache = args.cache or greenlist_home() / "bench"
    cache.mkdir(parents=True, exist_ok=True)

    model, tok, _ = load_causal_lm(None, greenlist_home())
    rows = human_rows()
    rng = random.Random(0)
    prompts = [f"Continue this text: {' '.join(r['text'].split()[:40])}" for r in rng.sample(rows, args.samples)]
    vocab = [w for r in rows[:500] for w in r["text"].split()]
    gens = {
        s: generate_cached(model, tok, prompts, s, args.batch, cache / f"wm_robust_{s}_{args.samples}{suffix}.json")
        for s in order
    }
    gen_minutes = (time.time() - started) / 60
    print("scoring", flush=True)

    detectors = {s: WatermarkDetector(KEY.scheme(GAMMA, s), z_threshold=4.0, min_tokens=16) for s in schemes}
    power: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for s in schemes:
        for t in LENGTHS:
            power[(s, f"T={t}")] = score(
                detectors[s], third_party_ids(tok, [tok.decode(g[:t], skip_special_tokens=True) for g in gens[s]])
            )
        full = [tok.decode(g, skip_special_tokens=True) for g in gens[s]]
        for kind, rate in ATTACKS:
            edit_rng = random.Random(f"{kind}-{rate}")  # the same edits (positions, words) for every scheme
            power[(s, f"{kind} {rate:.0%}")] = score(
                detectors[s], third_party_ids(tok, [perturb(t, rate, kind, vocab, edit_rng) for t in full])
            )
    fpr: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    n_human: dict[int, int] = {}
    for t in LENGTHS:
        ids = third_party_ids(tok, human_windows(tok, rows, t))
        n_human[t] = len(ids)
        for s in schemes:
            fpr[(s, t)] = score(detectors[s], ids)
        print(f"  human T={t}: {len(ids)} texts scored", flush=True)

    files = ", ".join(f"`{p.name}`" for p in sorted(HUMAN_DIR.glob("*.jsonl")))
    cols = [f"T={t}" for t in LENGTHS] + [f"{k} {r:.0%}" for k, r in ATTACKS]
    lines = [
        f"{machine()}{args.note}",
        f"Command: `python benchmarks/bench_watermark_robust.py --samples {args.samples}` "
        f"({(time.time() - started) / 60:.0f} min, of which {gen_minutes:.0f} generating; {args.threads} torch "
        "thread). Embedded SmolLM2-135M-Instruct, one key, "
        f"γ = {GAMMA}, δ = {DELTA}; for each scheme "
        f"{args.samples} sampled generations of {NEW_TOKENS} tokens (half at temperature 0.7, half at 1.0) "
        "continuing the same prompts drawn from human text; every text decoded, normalised and re-tokenized "
        "before scoring, as a third party would. Edits are applied to the 200-token text: words deleted, or "
        "substituted with random words of human text (the same positions and words for every scheme).",
        "",
        "TPR at z ≥ 4 (in brackets: TPR of the verdict, exact binomial p-value ≤ α = P(Z ≥ 4) = 3.2e-5):",
        "",
    ]
    rate = [
        [s] + [f"{(power[(s, c)][0] >= 4).mean():.3f} ({power[(s, c)][1].mean():.3f})" for c in cols] for s in schemes
    ]
    lines += markdown_table(["scheme", *cols], rate)
    lines += ["", "Median z of the watermarked texts:", ""]
    lines += markdown_table(
        ["scheme", *cols], [[s] + [f"{np.median(power[(s, c)][0]):.2f}" for c in cols] for s in schemes]
    )
    lines += [
        "",
        f"False positives on all of `../shared/data/human_text/` ({files}), non-overlapping windows of T "
        "tokens: FPR at z ≥ 4, FPR of the verdict, and the largest z.",
        "",
        "| scheme | T | human texts | FPR at z ≥ 4 | FPR (verdict) | max z |",
        "|---|---|---|---|---|---|",
    ]
    for s in schemes:
        for t in LENGTHS:
            zh, vh = fpr[(s, t)]
            lines.append(f"| {s} | {t} | {n_human[t]} | {(zh >= 4).mean():.5f} | {vh.mean():.5f} | {zh.max():.2f} |")
    body = "\n".join(lines)
    print(body, flush=True)
    if not args.no_write:
        write_section("Watermark seeding schemes", body)


if __name__ == "__main__":
    main()
