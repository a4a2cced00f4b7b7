"""Pick the sentence splitter of the toxicity guardrail: speed and boundary quality on mixed-language texts.

Ground truth is built, not annotated: single-sentence rows (one terminal mark, at the end) of each
language's data set are joined 3-6 at a time (with a space, or without one for Chinese), and a splitter is
scored on whether it puts a boundary exactly at each join and nowhere else (boundary precision / recall /
F1). English adds sentences with abbreviations ("Dr.", "e.g.", "U.S.", "3.5") that must not be split.

    python3 benchmarks/bench_toxicity_splitter.py [--n 300]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent.parent / "shared" / "data"
FILES = {
    "de": "toxicity_extra/germeval2018.csv",
    "fr": "toxicity_extra/mlma.csv",
    "ar": "toxicity_extra/mlma.csv",
    "zh": "toxicity_extra/cold.csv",
    "pt": "toxicity_extra/told_br.csv",
    "pl": "toxicity_extra/poleval2019_task6.csv",
    "en": "toxicity_extra/hatemoji_build.csv",
}
ABBREV_EN = [
    "Dr. Smith met Mr. Jones at 3.5 km from the U.S. border.",
    "We saw e.g. owls, bats and foxes.",
    "The St. Lawrence river is wide.",
    "It costs approx. 4 dollars at most.",
]
_TERMINAL = re.compile(r"[.!?。！？؟]")


def _data_dir() -> Path:
    for cand in (DATA, Path("/work/shared/data")):
        if cand.is_dir():
            return cand
    raise SystemExit("shared data not found")


def single_sentences(lang: str, limit: int = 400) -> list[str]:
    """Rows of ``lang`` with exactly one terminal mark, at the end (usable as one-sentence units)."""
    out = []
    with open(_data_dir() / FILES[lang], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            t = " ".join(row["text"].split())
            if row["language"] != lang or "@" in t or "URL" in t or len(t) < 15:
                continue
            if len(_TERMINAL.findall(t)) == 1 and _TERMINAL.match(t[-1]) and t[0].isupper() | (lang in "zh ar"):
                out.append(t)
            if len(out) >= limit:
                break
    return out


def build(n: int, seed: int = 0) -> list[tuple[str, str, set[int]]]:
    """``n`` (language, text, boundary offsets) samples, boundaries = character offsets where sentences join."""
    rng = random.Random(seed)
    pools = {lang: single_sentences(lang) for lang in FILES}
    pools["en"] += ABBREV_EN * 20
    samples = []
    langs = [lang for lang in pools if len(pools[lang]) >= 10]
    for i in range(n):
        lang = langs[i % len(langs)]
        sents = rng.sample(pools[lang], rng.randint(3, 6))
        sep = "" if lang == "zh" else " "
        text, bounds = "", set()
        for s in sents:
            if text:
                text += sep
                bounds.add(len(text))
            text += s
        samples.append((lang, text, bounds))
    return samples


def splitters() -> dict[str, object]:
    """name -> callable(text, lang) returning sentence start offsets (after the first)."""
    out: dict[str, object] = {}
    try:
        import blingfire

        def bf(text: str, lang: str) -> set[int]:
            _, offs = blingfire.text_to_sentences_and_offsets(text)
            return {s for s, _ in offs[1:]}

        out["blingfire"] = bf
    except ImportError:
        pass
    try:
        import pysbd

        segs = {}

        def sbd(text: str, lang: str) -> set[int]:
            if lang not in segs:
                try:
                    segs[lang] = pysbd.Segmenter(language=lang, clean=False, char_span=True)
                except ValueError:
                    segs[lang] = pysbd.Segmenter(language="en", clean=False, char_span=True)
            return {s.start for s in segs[lang].segment(text)[1:]}

        out["pysbd"] = sbd
    except ImportError:
        pass
    try:
        import sentencex

        def sx(text: str, lang: str) -> set[int]:
            starts, pos = set(), 0
            for k, s in enumerate(sentencex.segment(lang, text)):
                j = text.find(s.strip(), pos) if s.strip() else pos
                if k and j >= 0:
                    starts.add(j)
                pos = max(pos, j + len(s.strip()))
            return starts

        out["sentencex"] = sx
    except ImportError:
        pass
    return out


def main() -> None:
    """Print boundary P/R/F1 per language and texts/s per splitter (JSON)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=350)
    args = ap.parse_args()
    samples = build(args.n)
    report = {}
    for name, fn in splitters().items():
        per: dict[str, list[int]] = {}
        t0 = time.perf_counter()
        preds = [fn(text, lang) for lang, text, _ in samples]
        dt = time.perf_counter() - t0
        for (lang, _, gold), pred in zip(samples, preds, strict=False):
            c = per.setdefault(lang, [0, 0, 0])
            c[0] += len(gold & pred)
            c[1] += len(pred)
            c[2] += len(gold)
        f1 = {lang: round(2 * tp / max(p + g, 1), 3) for lang, (tp, p, g) in per.items()}
        tp, p, g = (sum(v[i] for v in per.values()) for i in range(3))
        report[name] = {
            "texts_per_s": round(len(samples) / dt),
            "boundary_f1": round(2 * tp / (p + g), 3),
            "precision": round(tp / max(p, 1), 3),
            "recall": round(tp / g, 3),
            "f1_per_language": f1,
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
