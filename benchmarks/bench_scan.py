"""``greenlist scan`` throughput: in-process, and on a local Ray with 1 and 2 workers.

Run ``python benchmarks/bench_scan.py`` (one command; writes the section "Batch scanning" of
``docs/benchmarks.md``). It builds a mixed dataset (human text from ``../shared/data/human_text/`` and texts of
words drawn mostly from the green list of a ``robust`` key, made without the language model) in a temporary
``GREENLIST_HOME`` (the converted model and caches are reused from ``~/.greenlist``; your keys are not touched), scans
it with each runner into a fresh output, checks that every runner gives the same rows, and reports wall time
(start-up included: tokenizer, Ray, actors) and the marginal throughput: each runner scans the first N rows and
all 2N rows from scratch (``--repeat`` times each, the fastest counting), and N / (wall(2N) - wall(N)) cancels the
fixed start-up cost. (Rows/s after the
first written batch would overstate Ray, whose finished blocks reach the driver in bursts.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, publish, shared_data  # noqa: E402

HUMAN_DIR = shared_data("human_text")
SHARES, LENGTHS = (0.0, 0.3, 0.9), (8, 60, 120, 200)


def scan_home(home: Path) -> Path:
    """Prepare ``home`` as a GREENLIST_HOME: ``models``/``cache`` linked from ``~/.greenlist``, a ``robust`` key active.

    Returns:
        ``home``.
    """
    from watermark.keys import rotate

    cached = Path.home() / ".greenlist"
    for sub in ("models", "cache"):
        if (cached / sub).is_dir() and not (home / sub).exists():
            (home / sub).symlink_to(cached / sub)
    rotate(home, seeding_scheme="robust")
    return home


def mixed_rows(home: Path, n_human: int, n_marked: int, seed: int = 20) -> list[dict[str, Any]]:
    """Human rows and green-word rows, shuffled.

    Human rows (``id`` ``h<i>``, ``kind`` ``human``) are sampled from ``british_novels.jsonl`` (with replacement when
    more are asked for than it has). Marked rows
    (``w<i>``, ``kind`` ``green<share>-<length>``) are ``length`` ∈ {8, 60, 120, 200} word tokens of the served
    tokenizer, each drawn from the active key's (fixed, ``robust``) green list with probability ``share`` ∈
    {0, 0.3, 0.9}, else from all word tokens, and decoded.

    Args:
        home: A GREENLIST_HOME prepared by :func:`scan_home`.
        n_human: Human rows. n_marked: Green-word rows. seed: Seed of every draw.

    Returns:
        Dicts with ``id``, ``text`` and ``kind``.
    """
    import numpy as np

    from gateway.backends.loading import load_tokenizer
    from watermark.keys import load_keyring

    tok = load_tokenizer(None, home)
    tok = getattr(tok, "backend", tok)  # the torch-free tokenizer file wraps a `tokenizers.Tokenizer`
    words = np.array(
        sorted(i for t, i in tok.get_vocab().items() if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 3)
    )
    green = load_keyring(home).active.scheme(0.25, "selfhash").green_mask([], tok.get_vocab_size())[words]
    rng = random.Random(seed)
    human = [json.loads(line)["text"] for line in (HUMAN_DIR / "british_novels.jsonl").open()]
    picked = rng.sample(human, n_human) if n_human <= len(human) else rng.choices(human, k=n_human)
    rows = [{"id": f"h{i}", "text": t, "kind": "human"} for i, t in enumerate(picked)]
    green_words = words[green]
    for i in range(n_marked):
        share, length = rng.choice(SHARES), rng.choice(LENGTHS)
        ids = [int(rng.choice(green_words if rng.random() < share else words)) for _ in range(length)]
        rows.append({"id": f"w{i}", "text": tok.decode(ids).strip(), "kind": f"green{share}-{length}"})
    rng.shuffle(rows)
    return rows


def main() -> None:
    """Build the dataset, scan it with each runner, compare the outputs and write the docs section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="N: runs of N and 2N rows, half human, half green-word")
    parser.add_argument("--task", default="verify", choices=("verify", "moderate", "guardrails"))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="runs per runner and size; the fastest counts")
    parser.add_argument("--runners", default="local,ray1,ray2")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", default="", help="appended to the machine line (e.g. ', CPU shared with other jobs')")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    os.environ["GREENLIST_HOME"] = str(work / "home")
    (work / "home").mkdir()
    from gateway.scan import TaskSpec, scan

    home = scan_home(work / "home")
    rows = mixed_rows(home, args.rows, args.rows)  # 2N rows; the first N are the small run
    sizes = {"half": args.rows, "full": 2 * args.rows}
    for name, n in sizes.items():
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:n]))
    import pyarrow.parquet as pq

    walls: dict[tuple[str, str], float] = {}
    firsts: dict[str, float | None] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for runner in args.runners.split(","):
        for name, rep in ((name, rep) for rep in range(args.repeat) for name in sizes):
            out = work / f"{runner}-{name}-{rep}.parquet"
            t0 = time.perf_counter()
            summary = scan(
                work / f"{name}.jsonl",
                out,
                TaskSpec(args.task),
                id_column="id",
                batch_size=args.batch_size,
                ray=runner.startswith("ray"),
                workers=int(runner[3:]) if runner.startswith("ray") else None,
                progress=False,
            )
            wall = time.perf_counter() - t0
            walls[(runner, name)] = min(wall, walls.get((runner, name), wall))  # the least disturbed run
            print(f"{runner}: {summary.rows_written} rows, {wall:.1f} s wall", flush=True)
        firsts[runner] = summary.first_batch_s
        outputs[runner] = {r["row_id"]: r for r in pq.read_table(out).to_pylist()}
    base = next(iter(outputs.values()))
    same = {r: sum(outputs[r][k] == base[k] for k in base) for r in outputs}
    names = {"local": "in-process", "ray1": "Ray, 1 worker", "ray2": "Ray, 2 workers"}
    n, n2 = sizes["half"], sizes["full"]
    lines = [
        f"{machine()}{args.note}",
        f"Command: `python benchmarks/bench_scan.py --rows {args.rows}` (task `{args.task}`, batch size "
        f"{args.batch_size}, local Ray started by each scan). Each runner scans {n} and {n2} rows from scratch, "
        f"{args.repeat} times each, the fastest run counting (the CPU is shared) "
        "(half human text from `british_novels.jsonl`, half texts of 8-200 words drawn partly from a `robust` key's "
        "green list). Wall time includes start-up (tokenizer; Ray and its actors, each loading the tokenizer); "
        f"marginal rows/s = {n2 - n} / (wall({n2}) - wall({n})), start-up cancelled.",
        "",
        f"| runner | wall s, {n} rows | wall s, {n2} rows | first batch written after s (last {n2}-row run) | "
        f"rows/s (wall, {n2}) | rows/s (marginal) | rows identical to in-process ({n2}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for runner in outputs:
        small, big = walls[(runner, "half")], walls[(runner, "full")]
        marginal = f"{(n2 - n) / (big - small):.0f}" if big > small else "-"
        lines.append(
            f"| {names.get(runner, runner)} | {small:.1f} | {big:.1f} | {firsts[runner] or 0:.1f} | "
            f"{n2 / big:.0f} | {marginal} | {same[runner]} / {len(base)} |"
        )
    publish("Batch scanning (greenlist scan)", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
