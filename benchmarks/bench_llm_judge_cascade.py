"""Cascade trade-off of the llm_judge guardrail: local toxicity classifier, judge, and the two together.

Run ``python benchmarks/bench_llm_judge_cascade.py [--write]``. Data: the English dev splits of
``toxicity_extra`` (HateXplain val, HatemojiBuild dev; neither is in the default toxicity model's training
data; ``ag_news_long`` is not used). Local scores come from :class:`guardrails.toxicity.ToxicityGuardrail`
(default model). The judge is simulated: an ``httpx.MockTransport`` answering in the JSON-verdict format with
the gold label, right with probability 0.95 (fixed per text by a seeded hash, so every configuration sees
the same judge), after a 300 ms delay that advances a :class:`greenlist.clock.ManualClock` instead of
sleeping. Every configuration runs through :class:`guardrails.llm_judge.LLMJudgeGuardrail` itself, so the
added latency is the ``details["judge"]["latency_ms"]`` the guardrail records.

``--write`` replaces the ``## LLM judge cascade`` section of ``docs/benchmarks.md`` and the table between
the ``bench_llm_judge_cascade`` markers in ``docs/llm_judge.md``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import statistics
import sys
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import machine, write_section  # noqa: E402
from greenlist.clock import ManualClock  # noqa: E402
from guardrails.base import Decision, Direction, GuardrailResult, ScanContext  # noqa: E402
from guardrails.llm_judge import LLMJudgeConfig, LLMJudgeGuardrail  # noqa: E402

TITLE = "LLM judge cascade"
ROOT = Path(__file__).resolve().parent.parent


def extra_dir() -> Path:
    """``$GREENLIST_SHARED_DATA/toxicity_extra``, else ``shared/data/toxicity_extra`` beside the repository
    (or beside its parent, for a git worktree)."""
    if os.environ.get("GREENLIST_SHARED_DATA"):
        return Path(os.environ["GREENLIST_SHARED_DATA"]) / "toxicity_extra"
    candidates = [p / "shared" / "data" / "toxicity_extra" for p in (ROOT.parent, ROOT.parent.parent)]
    return next((c for c in candidates if c.exists()), candidates[0])


FILES = ("hatexplain.csv", "hatemoji_build.csv")
JUDGE_ACCURACY, JUDGE_DELAY_S, LOCAL_THRESHOLD = 0.95, 0.300, 0.5
MAX_JUDGED, MAX_GAP = 0.20, 0.01
DOCS = ROOT / "docs"
MARK_START, MARK_END = "<!-- bench_llm_judge_cascade:start -->", "<!-- bench_llm_judge_cascade:end -->"


def load_dev(folder: Path | None = None) -> tuple[list[str], np.ndarray]:
    """English dev rows: texts and gold labels (1 = toxic), duplicates dropped."""
    folder = folder or extra_dir()
    texts, gold, seen = [], [], set()
    for name in FILES:
        with open(folder / name, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r["split"] == "dev" and r["language"] == "en" and r["text"] not in seen:
                    seen.add(r["text"])
                    texts.append(r["text"])
                    gold.append(1 if r["label"] == "toxic" else 0)
    return texts, np.array(gold)


def judge_answers(texts: list[str], gold: np.ndarray, seed: int = 17) -> dict[str, int]:
    """The simulated judge's answer per text: the gold label, flipped for a seeded 5% of texts."""
    out = {}
    for t, y in zip(texts, gold, strict=True):
        u = int(hashlib.sha256(f"{seed}:{t}".encode()).hexdigest()[:8], 16) / 2**32
        out[t] = int(y) if u < JUDGE_ACCURACY else 1 - int(y)
    return out


def judge_transport(answers: dict[str, int], clock: ManualClock) -> httpx.MockTransport:
    """A JSON-verdict judge that answers from ``answers`` after advancing ``clock`` by the judge delay."""

    def handle(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][1]["content"]
        clock.advance(JUDGE_DELAY_S)
        v = answers[text]
        verdict = {"violation": v, "category": "hate" if v else None, "rationale": "simulated"}
        return httpx.Response(
            200, json={"choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(verdict)}}]}
        )

    return httpx.MockTransport(handle)


def run(
    texts: list[str],
    gold: np.ndarray,
    scores: list[dict[str, float]],
    answers: dict[str, int],
    band: tuple[float, float] | None,
    categories: list[str] | None,
) -> dict[str, float]:
    """Accuracy, share judged and added-latency percentiles of the judge (``band=None``: always asked)."""
    clock = ManualClock()
    cascade = {"after": "toxicity", "band": list(band), "categories": categories} if band else None
    cfg = LLMJudgeConfig.model_validate(
        {
            "base_url": "http://judge.invalid/v1",
            "model": "sim",
            "format": "gpt-oss-safeguard",
            "cache_size": 0,
            "cascade": cascade,
            "max_concurrency": 1,
        }
    )
    g = LLMJudgeGuardrail(cfg, clock=clock, transport=judge_transport(answers, clock))
    correct, asked, added = 0, 0, []
    for text, y, sc in zip(texts, gold, scores, strict=True):
        tox = sc["toxicity"]
        prior = {
            "toxicity": GuardrailResult(
                "toxicity",
                tox,
                Decision.BLOCK if tox >= LOCAL_THRESHOLD else Decision.ALLOW,
                details={"categories": sc},
            )
        }
        r = g.scan_in_context(text, Direction.INPUT, ScanContext(prior=prior))
        assert r.error is None, r.error
        correct += int((r.decision is not Decision.ALLOW) == bool(y))
        asked += int(r.details["judge"]["asked"])
        added.append(r.details["judge"].get("latency_ms", 0.0) if r.details["judge"]["asked"] else 0.0)
    g.close()
    q = statistics.quantiles(added, n=100, method="inclusive")
    return {
        "accuracy": correct / len(texts),
        "judged": asked / len(texts),
        "p50_ms": q[49],
        "p95_ms": q[94],
        "mean_ms": statistics.fmean(added),
    }


def pick_band(tox: np.ndarray, gold: np.ndarray, judge: np.ndarray) -> tuple[float, float]:
    """The band (toxicity only, 0.05 grid) with the best accuracy among those judging <= 20% of texts."""
    best: tuple[float, float, float] = (-1.0, 0.0, 0.0)
    grid = np.round(np.arange(0.0, 1.0001, 0.05), 2)
    local = (tox >= LOCAL_THRESHOLD).astype(int)
    for lo in grid:
        for hi in grid[grid >= lo]:
            inb = (tox >= lo) & (tox <= hi)
            if inb.mean() > MAX_JUDGED:
                continue
            acc = float((np.where(inb, judge, local) == gold).mean())
            if acc > best[0] + 1e-12:
                best = (acc, float(lo), float(hi))
    return best[1], best[2]


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """Markdown table of the measured configurations."""
    lines = [
        "| configuration | accuracy | sent to judge | added latency p50 | p95 | mean |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['accuracy']:.3f} | {m['judged']:.1%} | {m['p50_ms']:.0f} ms | "
            f"{m['p95_ms']:.0f} ms | {m['mean_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    """Measure, print the table and (with ``--write``) update the docs."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md and docs/llm_judge.md")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N texts (0 = all)")
    args = ap.parse_args()
    texts, gold = load_dev()
    if args.limit:
        texts, gold = texts[: args.limit], gold[: args.limit]
    from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail

    scores = ToxicityGuardrail(ToxicityConfig.model_validate({})).classify(texts)
    answers = judge_answers(texts, gold)
    tox = np.array([s["toxicity"] for s in scores])
    jud = np.array([answers[t] for t in texts])
    lo, hi = pick_band(tox, gold, jud)
    local = {
        "accuracy": float(((tox >= LOCAL_THRESHOLD).astype(int) == gold).mean()),
        "judged": 0.0,
        "p50_ms": 0.0,
        "p95_ms": 0.0,
        "mean_ms": 0.0,
    }
    rows: list[tuple[str, dict[str, float]]] = [
        ("local alone (toxicity >= 0.5)", local),
        ("judge alone", run(texts, gold, scores, answers, None, None)),
    ]
    bands = [(0.4, 0.6), (lo, hi), (0.2, 0.8)]
    for b in dict.fromkeys(bands):
        mark = " **(default)**" if b == (lo, hi) else ""
        rows.append(
            (f"cascade, toxicity in [{b[0]:.2f}, {b[1]:.2f}]{mark}", run(texts, gold, scores, answers, b, ["toxicity"]))
        )
    rows.append(("cascade, any category in [0.40, 0.60]", run(texts, gold, scores, answers, (0.4, 0.6), None)))
    default = dict(rows)[f"cascade, toxicity in [{lo:.2f}, {hi:.2f}] **(default)**"]
    gap = dict(rows)["judge alone"]["accuracy"] - default["accuracy"]
    verdict = "meets" if default["judged"] <= MAX_JUDGED and gap <= MAX_GAP else "does NOT meet"
    body = (
        f"{machine()} {len(texts)} English dev texts "
        f"({int(gold.sum())} toxic): HateXplain val + HatemojiBuild dev from `toxicity_extra`. "
        f"Local: default toxicity model, fires at toxicity >= 0.5. Judge: simulated, gold label with accuracy "
        f"{JUDGE_ACCURACY} after {JUDGE_DELAY_S * 1000:.0f} ms (a ManualClock, so computed, not slept), "
        f"JSON-verdict format through the real guardrail. Added latency = judge time per text (0 when the "
        f"local decision stands).\n\n{table(rows)}\n\n"
        f"Default band [{lo:.2f}, {hi:.2f}] on the local toxicity score (best accuracy among bands judging "
        f"<= {MAX_JUDGED:.0%}, 0.05 grid): it {verdict} the target (<= {MAX_JUDGED:.0%} judged and within "
        f"{MAX_GAP * 100:.0f} point of judge-alone; gap {gap * 100:.1f} points). The band was chosen on the "
        f"same dev texts it is reported on, so its numbers are optimistic. "
        f"Reproduce: `python benchmarks/bench_llm_judge_cascade.py --write`."
    )
    print(body)
    if args.write and not args.limit:
        write_section(TITLE, body)
        doc = DOCS / "llm_judge.md"
        text = doc.read_text()
        start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
        doc.write_text(text[:start] + "\n" + body + "\n" + text[end:])


if __name__ == "__main__":
    main()
