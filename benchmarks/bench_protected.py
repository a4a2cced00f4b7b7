"""Benchmark of the protected-content guardrail (issue 4, "Must show").

    python benchmarks/bench_protected.py            # full run (~10-15 min on 2 cores)
    python benchmarks/bench_protected.py --quick    # ~2 min, smaller samples, 10k/100k scale only

Sections (each prints a Markdown table):

1. prose  — the five books of ../shared/data/protected_prose indexed as one
   corpus; recall of random 50/100/200-word excerpts, verbatim and with 10% /
   20% of words substituted or deleted; false-positive rate on every text of
   british_novels.jsonl; recall/FPR at several containment thresholds and for
   several (k, bands x rows) settings (the parameter sweep behind the defaults).
2. code   — stdlib modules indexed as a code corpus; recall for functions
   copied verbatim, with every identifier renamed, and renamed + independent
   statements reordered; false positives on functions of other stdlib modules.
3. scale  — synthetic Zipf-vocabulary documents, 10k / 100k / 1M passages:
   build throughput, memory, query p50/p95, and brute-force exact Jaccard
   over the same passages (speed-up and pair recall at J >= 0.5 / 0.3).
4. guardrail — ProtectedContentGuardrail.scan latency on 300-word outputs
   against the largest synthetic index (loaded from disk like the gateway).

Long module: one benchmark script (data generation, runs, report) meant to be read top to bottom.
"""

from __future__ import annotations

import argparse
import ast
import gc
import glob
import json
import os
import random
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guardrails.base import Direction  # noqa: E402
from guardrails.protected import ProtectedContentConfig, ProtectedContentGuardrail  # noqa: E402
from guardrails.protected.index import Corpus, CorpusParams, passage_bounds  # noqa: E402
from guardrails.protected.matcher import Matcher  # noqa: E402
from guardrails.protected.shingling import prose_tokens, shingle_hashes  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
BOOKS = sorted(glob.glob(str(DATA / "protected_prose" / "*.txt")))
NOVELS = DATA / "human_text" / "british_novels.jsonl"
SAMPLES: dict[str, list[tuple[str, str]]] = {}
THRESHOLDS = (0.2, 0.25, 0.3, 0.4, 0.5)


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """q-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --------------------------------------------------------------------------- prose


def edit_words(words: list[str], rate: float, vocab: list[str], rng: random.Random) -> list[str]:
    """Substitute or delete (50/50) ``round(rate*len)`` distinct random words."""
    n_edit = round(rate * len(words))
    idx = set(rng.sample(range(len(words)), n_edit))
    out = []
    for i, w in enumerate(words):
        if i in idx:
            if rng.random() < 0.5:
                out.append(rng.choice(vocab))
        else:
            out.append(w)
    return out


def excerpt(text: str, n_words: int, rng: random.Random) -> list[str]:
    """``n_words`` consecutive whitespace-separated words (with punctuation) from a random place."""
    words = text.split()
    start = rng.randrange(0, len(words) - n_words)
    return words[start : start + n_words]


def bench_prose(home: Path, quick: bool, rng: random.Random) -> dict:
    novels = [json.loads(line)["text"] for line in open(NOVELS, encoding="utf-8")]
    vocab = sorted({w for t in novels[:500] for w in t.split()})
    texts = {b: open(b, encoding="utf-8").read() for b in BOOKS}
    n_ex = 60 if quick else 200
    configs = [
        ("k5 b42r3", dict(k=5, bands=42, rows=3)),
        ("k5 b32r4", dict(k=5, bands=32, rows=4)),
        ("k5 b64r2", dict(k=5, bands=64, rows=2)),
    ]
    if quick:
        configs = configs[:2]
    # Same excerpts for every config.
    cases = []
    for n_words in (50, 100, 200):
        for rate in (0.0, 0.1, 0.2):
            for _ in range(n_ex):
                book = rng.choice(BOOKS)
                words = excerpt(texts[book], n_words, rng)
                cases.append((n_words, rate, book, " ".join(edit_words(words, rate, vocab, rng))))
    human = novels if not quick else novels[:1500]
    results = {}
    for label, kw in configs:
        params = CorpusParams(**{**CorpusParams.default("prose").__dict__, **kw})
        name = "books_" + label.replace(" ", "_")
        t0 = time.perf_counter()
        corpus = Corpus.create(name, params, home=home)
        corpus.add_paths(BOOKS)
        build_s = time.perf_counter() - t0
        matcher = Matcher(corpus)
        sims: dict[tuple[int, float], list[float]] = {}
        lat = []
        for n_words, rate, book, text in cases:
            t0 = time.perf_counter()
            matches, _ = matcher.match(text, 0.0)
            lat.append((time.perf_counter() - t0) * 1e3)
            s = max((m.similarity for m in matches if m.document == book), default=0.0)
            sims.setdefault((n_words, rate), []).append(s)
        hbest = []
        for text in human:
            _, best = matcher.match(text, 0.0)
            hbest.append(best)
        results[label] = {
            "build_s": build_s,
            "passages": corpus.stats()["passages"],
            "lat_p50": pct(lat, 50),
            "recall": {
                f"{n}w/{int(r * 100)}%": {t: float(np.mean(np.array(v) >= t)) for t in THRESHOLDS}
                for (n, r), v in sims.items()
            },
            "fpr": {t: float(np.mean(np.array(hbest) >= t)) for t in THRESHOLDS},
            "human_max": float(max(hbest)),
            "human_p999": pct(hbest, 99.9),
            "n_human": len(human),
        }
        print(
            f"[prose] {label}: built {results[label]['passages']} passages in {build_s:.1f}s; "
            f"FPR@0.3={results[label]['fpr'][0.3]:.4f}; "
            f"recall 100w/10%@0.3={results[label]['recall']['100w/10%'][0.3]:.3f}",
            flush=True,
        )
    return {"n_excerpts": n_ex, "configs": results}


# --------------------------------------------------------------------------- code


class _Renamer(ast.NodeTransformer):
    """Rename every identifier (variables, args, attributes, functions) consistently."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}

    def _new(self, name: str) -> str:
        return self.map.setdefault(name, f"v{len(self.map)}_")

    def visit_Name(self, node):
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._new(node.arg)
        node.annotation = None
        return node

    def visit_Attribute(self, node):
        self.generic_visit(node)
        node.attr = self._new(node.attr)
        return node

    def visit_FunctionDef(self, node):
        node.name = self._new(node.name)
        self.generic_visit(node)
        return node


def _names(node: ast.AST) -> tuple[set[str], set[str]]:
    reads, writes = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (writes if isinstance(n.ctx, ast.Store) else reads).add(n.id)
    return reads, writes


def reorder_independent(fn: ast.FunctionDef, rng: random.Random) -> int:
    """Swap adjacent independent simple statements (no read/write conflicts, no calls)."""
    swaps = 0
    for body_owner in ast.walk(fn):
        body = getattr(body_owner, "body", None)
        if not isinstance(body, list):
            continue
        i = 0
        while i < len(body) - 1:
            a, b = body[i], body[i + 1]
            if all(isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign)) for s in (a, b)) and not any(
                isinstance(n, ast.Call) for s in (a, b) for n in ast.walk(s)
            ):
                ra, wa = _names(a)
                rb, wb = _names(b)
                if not (wa & (rb | wb)) and not (wb & ra):
                    body[i], body[i + 1] = b, a
                    swaps += 1
                    i += 2
                    continue
            i += 1
    return swaps


def stdlib_functions(paths: list[Path], min_tokens: int = 60) -> list[tuple[Path, ast.FunctionDef, str]]:
    """Top-level functions and methods of ``paths`` with their source (at least ~min_tokens tokens)."""
    out = []
    for p in paths:
        src = p.read_text("utf-8", errors="replace")
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                seg = ast.get_source_segment(src, node)
                if seg and len(seg.split()) >= min_tokens:
                    out.append((p, node, seg))
    return out


def bench_code(home: Path, quick: bool, rng: random.Random) -> dict:
    import copy

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    mods = sorted(p for p in stdlib.glob("*.py") if 2_000 < p.stat().st_size < 200_000)
    rng.shuffle(mods)
    n_idx = 40 if quick else 80
    indexed, held_out = mods[:n_idx], mods[n_idx : n_idx * 2]
    fns = stdlib_functions(indexed)
    rng.shuffle(fns)
    fns = fns[: (80 if quick else 250)]
    variants, n_swapped = [], 0
    for path, node, seg in fns:
        renamed = _Renamer().visit(copy.deepcopy(node))
        reordered = copy.deepcopy(renamed)
        n_swapped += reorder_independent(reordered, rng) > 0
        variants.append(
            (path, {"verbatim": seg, "renamed": ast.unparse(renamed), "renamed+reordered": ast.unparse(reordered)})
        )
    held = stdlib_functions(held_out)
    rng.shuffle(held)
    held = held[: (150 if quick else 600)]
    configs = {
        "k15 b42r3 L60 (default)": dict(k=15),
        "k10 b42r3 L60": dict(k=10),
        "k20 b42r3 L80": dict(k=20, passage_len=80),
    }
    out: dict = {
        "indexed_modules": len(indexed),
        "held_out_modules": len(held_out),
        "n_functions": len(fns),
        "n_reordered": n_swapped,
        "n_held": len(held),
        "configs": {},
    }
    for label, kw in configs.items():
        params = CorpusParams(**{**CorpusParams.default("code").__dict__, **kw})
        t0 = time.perf_counter()
        corpus = Corpus.create("stdlib_" + label.split(" (")[0].replace(" ", "_"), params, home=home)
        corpus.add_paths(indexed)
        build_s = time.perf_counter() - t0
        matcher = Matcher(corpus)
        rec: dict[str, list[float]] = {"verbatim": [], "renamed": [], "renamed+reordered": []}
        for path, texts in variants:
            for key, text in texts.items():
                matches, _ = matcher.match(text, 0.0)
                rec[key].append(max((m.similarity for m in matches if m.document == str(path)), default=0.0))
        fp_best = [matcher.match(seg, 0.0)[1] for _, _, seg in held]
        res = {
            "build_s": build_s,
            "passages": corpus.stats()["passages"],
            "recall": {k: {t: float(np.mean(np.array(v) >= t)) for t in THRESHOLDS} for k, v in rec.items()},
            "fpr": {t: float(np.mean(np.array(fp_best) >= t)) for t in THRESHOLDS},
        }
        out["configs"][label] = res
        print(
            f"[code] {label}: recall@0.5: "
            + ", ".join(f"{k}={v[0.5]:.3f}" for k, v in res["recall"].items())
            + f"; FP@0.3={res['fpr'][0.3]:.4f} FP@0.5={res['fpr'][0.5]:.4f}",
            flush=True,
        )
    return out


# --------------------------------------------------------------------------- scale


def synthetic_docs(n_passages: int, rng: np.random.Generator, words_per_doc: int = 1000):
    """Yield ``(name, text, None)`` documents of Zipf(1.1)-distributed words from a 50k vocabulary."""
    vocab = np.array([f"w{i}" for i in range(50_000)])
    p = 1.0 / np.arange(1, 50_001) ** 1.1
    p /= p.sum()
    per_doc = len(passage_bounds(words_per_doc - 4, CorpusParams.default("prose"))[0])
    n_docs = max(1, n_passages // per_doc)
    for d in range(n_docs):
        yield f"syn{d}", " ".join(vocab[rng.choice(50_000, size=words_per_doc, p=p)]), None


def brute_force_jaccard(q: np.ndarray, flat: np.ndarray, p_starts: np.ndarray, p_ends: np.ndarray) -> np.ndarray:
    """Exact Jaccard of shingle set ``q`` with every passage ``flat[s:e]`` (sets ≈ slices)."""
    qs = np.unique(q)
    hit = np.isin(flat, qs).astype(np.int32)
    cs = np.concatenate([[0], np.cumsum(hit)])
    inter = cs[p_ends] - cs[p_starts]
    return inter / (len(qs) + (p_ends - p_starts) - inter)


def bench_scale(home: Path, sizes: list[int], rng_seed: int, backends: dict[int, list[str]]) -> list[dict]:
    rows = []
    for size in sizes:
        for backend in backends.get(size, ["numpy"]):
            gc.collect()
            rng = np.random.default_rng(rng_seed)
            docs = list(synthetic_docs(size, rng))
            rss0 = rss_mb()
            t0 = time.perf_counter()
            corpus = Corpus.create(f"syn{size}_{backend}", CorpusParams.default("prose"), home=home, backend=backend)
            corpus.add_texts(docs, save=False)
            build_s = time.perf_counter() - t0
            rss1 = rss_mb()
            n_pass = corpus.stats()["passages"]
            t0 = time.perf_counter()
            corpus.save()
            save_s = time.perf_counter() - t0
            lsh_bytes = corpus.lsh.nbytes() if backend == "numpy" else None
            doc_bytes = sum(d.shingles.nbytes + d.tok_starts.nbytes + d.tok_ends.nbytes for d in corpus.data.values())
            matcher = Matcher(corpus)
            # queries: 100-word excerpts with 10% edits from random docs
            qrng = random.Random(rng_seed)
            vocab = [f"w{i}" for i in range(5000)]
            lat, found = [], 0
            n_q = 200 if size <= 100_000 else 100
            queries = []
            for _ in range(n_q):
                name, text, _ = docs[qrng.randrange(len(docs))]
                words = excerpt(text, 100, qrng)
                queries.append((name, " ".join(edit_words(words, 0.1, vocab, qrng))))
            for name, text in queries:
                t0 = time.perf_counter()
                matches, _ = matcher.match(text, 0.3)
                lat.append((time.perf_counter() - t0) * 1e3)
                found += any(m.document == name for m in matches)
            # brute force exact Jaccard on the same passages (window = first 46 shingles of each query)
            order = sorted(corpus.documents)
            flat = np.concatenate([corpus.data[d].shingles for d in order])
            offs = np.cumsum([0] + [len(corpus.data[d].shingles) for d in order])
            ps, pe, pid0 = [], [], []
            for d, off in zip(order, offs[:-1], strict=False):
                s, e = passage_bounds(len(corpus.data[d].shingles), corpus.params)
                ps.append(s + off)
                pe.append(e + off)
                pid0.append(np.arange(corpus.documents[d].pid_start, corpus.documents[d].pid_end))
            ps, pe, pid0 = np.concatenate(ps), np.concatenate(pe), np.concatenate(pid0)
            bf_lat, pairs_hi, pairs_hi_found, pairs_lo, pairs_lo_found = [], 0, 0, 0, 0
            n_bf = 30 if size >= 1_000_000 else 60
            for _, text in queries[:n_bf]:
                q = shingle_hashes(prose_tokens(text).tokens, 5)
                ws, we = passage_bounds(len(q), matcher._window_params)
                t0 = time.perf_counter()
                jac = brute_force_jaccard(q[ws[0] : we[0]], flat, ps, pe)
                bf_lat.append((time.perf_counter() - t0) * 1e3)
                cands = set(corpus.candidates(corpus.hasher.windows(q, ws[:1], we[:1]))[0].tolist())
                for thr, bucket in ((0.5, "hi"), (0.3, "lo")):
                    truth = set(pid0[jac >= thr].tolist())
                    got = len(truth & cands)
                    if bucket == "hi":
                        pairs_hi += len(truth)
                        pairs_hi_found += got
                    else:
                        pairs_lo += len(truth)
                        pairs_lo_found += got
            row = {
                "passages": n_pass,
                "backend": backend,
                "build_s": build_s,
                "build_pps": n_pass / build_s,
                "save_s": save_s,
                "rss_delta_mb": rss1 - rss0,
                "lsh_mb": None if lsh_bytes is None else lsh_bytes / 2**20,
                "doc_arrays_mb": doc_bytes / 2**20,
                "q_p50": pct(lat, 50),
                "q_p95": pct(lat, 95),
                "doc_recall": found / n_q,
                "bf_p50": pct(bf_lat, 50),
                "pair_recall_j50": pairs_hi_found / max(pairs_hi, 1),
                "pairs_j50": pairs_hi,
                "pair_recall_j30": pairs_lo_found / max(pairs_lo, 1),
                "pairs_j30": pairs_lo,
            }
            rows.append(row)
            print(
                f"[scale] {json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})}",
                flush=True,
            )
            SAMPLES[f"syn{size}_{backend}"] = [(d[0], d[1]) for d in docs[:50]]
            del corpus, matcher, docs, flat
            gc.collect()
    return rows


def bench_guardrail(home: Path, name: str, n: int = 200) -> dict:
    t0 = time.perf_counter()
    g = ProtectedContentGuardrail(ProtectedContentConfig(corpora=[name], home=str(home)))
    load_s = time.perf_counter() - t0
    novels = [json.loads(line)["text"] for line in open(NOVELS, encoding="utf-8")]
    rng = random.Random(7)
    corpus = g.matchers[name].corpus
    lat_clean, lat_copy, hits = [], [], 0
    samples = SAMPLES.get(name, [])
    for text in novels[:5]:  # warm-up (lazy imports, caches)
        g.scan(" ".join(text.split()[:300]), Direction.OUTPUT)
    for i in range(n):
        text = " ".join(" ".join(rng.sample(novels, 4)).split()[:300])
        t0 = time.perf_counter()
        g.scan(text, Direction.OUTPUT)
        lat_clean.append((time.perf_counter() - t0) * 1e3)
        if samples:
            # 300 words: 100 copied from a protected document between 200 human words.
            doc_name, doc_text = samples[i % len(samples)]
            copied = excerpt(doc_text, 100, rng)
            words = text.split()
            mixed = " ".join(words[:100] + copied + words[100:200])
            t0 = time.perf_counter()
            res = g.scan(mixed, Direction.OUTPUT)
            lat_copy.append((time.perf_counter() - t0) * 1e3)
            hits += any(m["document"] == doc_name for m in res.details.get("matches", []))
    return {
        "load_s": load_s,
        "passages": corpus.stats()["passages"],
        "clean_p50": pct(lat_clean, 50),
        "clean_p95": pct(lat_clean, 95),
        "copy_p50": pct(lat_copy, 50),
        "copy_p95": pct(lat_copy, 95),
        "copy_detected": hits / max(len(lat_copy), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small samples, scale 10k/100k only (~2-3 min)")
    ap.add_argument("--sections", default="prose,code,scale,guardrail")
    ap.add_argument("--max-scale", type=int, default=1_000_000)
    ap.add_argument("--out", default=None, help="write JSON results here")
    args = ap.parse_args()
    rng = random.Random(42)
    sections = set(args.sections.split(","))
    results: dict = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "command": " ".join(["python"] + sys.argv),
        "load_avg_start": os.getloadavg()[0],
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_protected_") as tmp:
        home = Path(tmp)
        if "prose" in sections:
            results["prose"] = bench_prose(home, args.quick, rng)
        if "code" in sections:
            results["code"] = bench_code(home, args.quick, rng)
        sizes = [s for s in ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]) if s <= args.max_scale]
        if "scale" in sections or "guardrail" in sections:
            backends = {10_000: ["numpy", "datasketch"], 100_000: ["numpy", "datasketch"]}
            results["scale"] = bench_scale(home, sizes if "scale" in sections else sizes[-1:], 1, backends)
        if "guardrail" in sections:
            results["guardrail"] = bench_guardrail(home, f"syn{sizes[-1]}_numpy")
            print(f"[guardrail] {results['guardrail']}", flush=True)
    results["load_avg_end"] = os.getloadavg()[0]
    results["wall_s"] = time.perf_counter() - t_start
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
