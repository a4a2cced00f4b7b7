"""Benchmark of the citation-checking guardrail (issue 5).

One command, bounded runtime (a few minutes on 2 CPU cores, most of it
embedding 20,000 titles once)::

    python benchmarks/bench_citations.py [--n-real 300] [--seed 0] [--write-docs]

Labelled set, built from ``../shared/data/citations/ir_anthology.jsonl``:

* **real**: records rendered in four styles -- APA, ACM, a numbered
  IEEE-style reference list, and author-year in running text with the title
  in quotes; 30% of list entries carry their DOI;
* **corrupted** (one field): the same with a wrong year (shifted by 1-6) or
  one displayed author replaced by an author of another record;
* **fabricated**: (a) the first half of one real title joined to the second
  half of another, under the first record's authors and year; (b) real
  authors with an invented title made of word chunks of three other titles.
  A fabricated title is kept only if no database title is within
  ``fuzz.ratio`` 75 of it. 30% of fabricated list entries carry a made-up DOI.

Each citation is embedded in one sentence or one-line reference list and
checked with :class:`guardrails.citations.CitationGuardrail`. Metrics:
precision / recall of ``not_found`` on fabricated citations (precision over
every citation predicted ``not_found``), accuracy of ``mismatch`` (verdict
``mismatch`` naming the corrupted field), false alarms on real citations
(verdict ``not_found`` or ``mismatch``), and false alarms on 300 paragraphs of
human prose without citations (British novels).

Latency: 100 distinct outputs of ~300 words (prose + 2 in-text citations +
a 3-entry reference list: 3 real, 1 corrupted, 1 fabricated) against a
20,000-record database (the 3,909 records plus copies with perturbed titles
and years); cold (first scan of each text) and warm (cached embeddings).

Long module: one benchmark script (data generation, runs, report) meant to be read top to bottom.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rapidfuzz import fuzz, process  # noqa: E402

from benchmarks.report import write_section  # noqa: E402
from guardrails.base import Direction  # noqa: E402
from guardrails.citations import CitationGuardrail, CitationGuardrailConfig  # noqa: E402
from guardrails.citations.database import CitationDatabase  # noqa: E402
from guardrails.citations.records import CitationRecord, load_file, norm_text, split_name  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CITATIONS = DATA / "citations" / "ir_anthology.jsonl"
NOVELS = DATA / "human_text" / "british_novels.jsonl"
STYLES = ("apa", "acm", "ieee", "running")


# --------------------------------------------------------------------------- rendering


def initials(given: str) -> str:
    """``"Judit Anna"`` -> ``"J. A."``; hyphenated given names keep the hyphen."""
    out = []
    for word in given.split():
        parts = [p for p in word.split("-") if p]
        out.append("-".join(p[0] + "." for p in parts))
    return " ".join(out)


def _apa_name(name: str) -> str:
    given, family = split_name(name)
    return f"{family}, {initials(given)}".strip().rstrip(",")


def _ieee_name(name: str) -> str:
    given, family = split_name(name)
    return f"{initials(given)} {family}".strip()


def _join(names: list[str], last_sep: str) -> str:
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]}{last_sep.replace(',', '')}{names[1]}"
    return ", ".join(names[:-1]) + f"{last_sep}{names[-1]}"


def render(
    style: str, authors: list[str], year: int, title: str, venue: str | None, doi: str | None, n: int = 1
) -> str:
    """Render one citation in ``style``; returns the text (a list line or a sentence)."""
    venue = venue or "Proceedings"
    if style == "apa":
        names = _join([_apa_name(a) for a in authors[:20]], ", & ")
        out = f"{names} ({year}). {title}. {venue}."
        return out + (f" https://doi.org/{doi}" if doi else "")
    if style == "acm":
        names = _join(authors, ", and ")
        out = f"{names}. {year}. {title}. {venue} ({year})."
        return out + (f" https://doi.org/{doi}" if doi else "")
    if style == "ieee":
        names = _join([_ieee_name(a) for a in authors[:6]], ", and ") + (" et al." if len(authors) > 6 else "")
        out = f"[{n}] {names}, \u201c{title},\u201d {venue}, {year}."
        return out + (f" doi: {doi}." if doi else "")
    # running text, narrative or parenthetical
    fams = [split_name(a)[1] for a in authors]
    who = fams[0] if len(fams) == 1 else (f"{fams[0]} and {fams[1]}" if len(fams) == 2 else f"{fams[0]} et al.")
    if n % 2:
        return f"As {who} ({year}) show in \u201c{title}\u201d, the effect depends on the collection."
    return f'This question is studied in "{title}" ({who}, {year}), among others.'


def displayed_authors(style: str, authors: list[str]) -> int:
    """How many leading authors ``style`` shows (corrupting a hidden one would be invisible)."""
    if style == "running":
        return 2 if len(authors) == 2 else 1
    if style == "ieee":
        return min(len(authors), 6)
    return min(len(authors), 20)


# --------------------------------------------------------------------------- labelled set


def build_items(records: list[CitationRecord], n_real: int, rng: random.Random) -> list[dict]:
    """Real, corrupted and fabricated citations (dicts with text, label, style, field)."""
    pool = [r for r in records if r.authors and r.year and len(r.title.split()) >= 4]
    rng.shuffle(pool)
    items: list[dict] = []
    all_authors = [a for r in records for a in r.authors]
    norm_titles = [norm_text(r.title) for r in records]
    for k, rec in enumerate(pool[:n_real]):
        style = STYLES[k % 4]
        doi = rec.doi if (style != "running" and rng.random() < 0.3) else None
        items.append(
            {
                "label": "real",
                "style": style,
                "text": render(style, rec.authors, rec.year, rec.title, rec.venue, doi, k),
                "id": rec.id,
            }
        )
        # corrupted copy: wrong year or wrong author
        if k % 2 == 0:
            year = rec.year + rng.choice([-6, -4, -3, -2, -1, 1, 2, 3, 5])
            items.append(
                {
                    "label": "corrupted",
                    "field": "year",
                    "style": style,
                    "id": rec.id,
                    "text": render(style, rec.authors, year, rec.title, rec.venue, doi, k),
                }
            )
        else:
            authors = list(rec.authors)
            pos = rng.randrange(displayed_authors(style, authors))
            fams = {norm_text(split_name(a)[1]) for a in authors}
            while True:
                other = rng.choice(all_authors)
                if norm_text(split_name(other)[1]) not in fams:
                    break
            authors[pos] = other
            items.append(
                {
                    "label": "corrupted",
                    "field": "authors",
                    "style": style,
                    "id": rec.id,
                    "text": render(style, authors, rec.year, rec.title, rec.venue, doi, k),
                }
            )
    n_fab = n_real
    made = 0
    while made < n_fab:
        a, b, c = rng.sample(pool, 3)
        if made % 2 == 0:  # (a) recombined halves
            wa, wb = a.title.split(), b.title.split()
            title = " ".join(wa[: max(2, len(wa) // 2)] + wb[len(wb) // 2 :])
            authors, year = a.authors, a.year
        else:  # (b) real authors, invented title from chunks of three other titles
            chunks = []
            for src in (b, c, rng.choice(pool)):
                w = src.title.split()
                i = rng.randrange(max(1, len(w) - 2))
                chunks.append(" ".join(w[i : i + rng.randint(2, 3)]))
            title = f"{chunks[0][:1].upper()}{chunks[0][1:]} for {chunks[1]} in {chunks[2]}"
            authors, year = a.authors, a.year + rng.choice([0, 1, 2])
        best = process.extractOne(norm_text(title), norm_titles, scorer=fuzz.ratio)
        if best and best[1] >= 75:
            continue
        style = STYLES[made % 4]
        doi = (
            f"10.{rng.randint(1000, 9999)}/fab.{rng.randint(10000, 99999)}"
            if (style != "running" and rng.random() < 0.3)
            else None
        )
        items.append(
            {
                "label": "fabricated",
                "style": style,
                "kind": "recombined" if made % 2 == 0 else "invented",
                "text": render(style, authors, year, title, a.venue, doi, made),
            }
        )
        made += 1
    return items


def wrap(item: dict) -> tuple[str, int, int]:
    """Put a citation in a small text; returns ``(text, start, end)`` of the citation."""
    if item["style"] == "running":
        lead = "Retrieval evaluation has a long history. "
        return lead + item["text"], len(lead), len(lead) + len(item["text"])
    lead = "Some background reading on this topic.\n\nReferences\n"
    return lead + item["text"] + "\n", len(lead), len(lead) + len(item["text"])


def evaluate(guard: CitationGuardrail, items: list[dict]) -> dict:
    """Verdict of every item; returns metrics overall and per style."""
    for item in items:
        text, a, b = wrap(item)
        cits = guard.check(text)
        hit = [c for c in cits if c["span"][0] < b and a < c["span"][1]]
        # the citation that covers most of the item decides (a running-text item is one merged citation)
        hit.sort(key=lambda c: -(min(b, c["span"][1]) - max(a, c["span"][0])))
        item["verdict"] = hit[0]["verdict"] if hit else "missed"
        item["fields"] = hit[0].get("fields", []) if hit else []
    return metrics(items)


def metrics(items: list[dict]) -> dict:
    """Precision/recall of not_found on fabricated, mismatch accuracy, false alarms on real."""

    def m(sub: list[dict]) -> dict:
        real = [i for i in sub if i["label"] == "real"]
        cor = [i for i in sub if i["label"] == "corrupted"]
        fab = [i for i in sub if i["label"] == "fabricated"]
        pred_nf = [i for i in sub if i["verdict"] == "not_found"]
        tp = sum(1 for i in pred_nf if i["label"] == "fabricated")
        return {
            "n_real": len(real),
            "n_corrupted": len(cor),
            "n_fabricated": len(fab),
            "nf_precision": tp / len(pred_nf) if pred_nf else float("nan"),
            "nf_recall": tp / len(fab) if fab else float("nan"),
            "mismatch_acc": sum(1 for i in cor if i["verdict"] == "mismatch" and i["field"] in i["fields"]) / len(cor)
            if cor
            else float("nan"),
            "mismatch_year": _acc([i for i in cor if i["field"] == "year"]),
            "mismatch_authors": _acc([i for i in cor if i["field"] == "authors"]),
            "real_false_alarm": sum(1 for i in real if i["verdict"] in ("not_found", "mismatch")) / len(real)
            if real
            else float("nan"),
            "real_verified": sum(1 for i in real if i["verdict"] == "verified") / len(real) if real else float("nan"),
            "missed": sum(1 for i in sub if i["verdict"] == "missed"),
        }

    out = {"all": m(items)}
    for style in STYLES:
        out[style] = m([i for i in items if i["style"] == style])
    return out


def _acc(sub: list[dict]) -> float:
    return (
        sum(1 for i in sub if i["verdict"] == "mismatch" and i["field"] in i["fields"]) / len(sub)
        if sub
        else float("nan")
    )


# --------------------------------------------------------------------------- latency


def perturb(rec: CitationRecord, rng: random.Random, vocab: list[str], k: int) -> CitationRecord:
    """A copy of ``rec`` with a perturbed title (drop / swap / replace a word) and year."""
    words = rec.title.split()
    op = rng.randrange(3)
    if op == 0 and len(words) > 3:
        del words[rng.randrange(len(words))]
    elif op == 1 and len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        words[rng.randrange(len(words))] = rng.choice(vocab)
    return CitationRecord(
        id=f"{rec.id}~{k}",
        title=" ".join(words),
        authors=rec.authors,
        year=(rec.year or 2000) + rng.choice([-1, 1, 2]),
        venue=rec.venue,
        source="perturbed",
    )


def big_database(records: list[CitationRecord], size: int, rng: random.Random, cache: Path | None) -> CitationDatabase:
    """The records plus perturbed copies up to ``size`` records, embedded (cached in ``cache``)."""
    if cache is not None and (cache / "citations" / f"bench{size}" / "meta.json").is_file():
        return CitationDatabase.load(f"bench{size}", cache)
    vocab = [w for r in records for w in r.title.split() if len(w) > 3]
    extra = [perturb(rng.choice(records), rng, vocab, k) for k in range(size - len(records))]
    db = CitationDatabase.build(f"bench{size}", records + extra, progress=True)
    if cache is not None:
        db.save(cache)
    return db


def latency_outputs(items: list[dict], rng: random.Random, n: int) -> list[str]:
    """``n`` texts of ~300 words: prose, 2 in-text citations, a 3-entry reference list."""
    prose = [json.loads(line)["text"] for line in NOVELS.read_text().splitlines()[:2000]]
    prose = [p for p in prose if 80 <= len(p.split()) <= 130 and '"' not in p and "\u201c" not in p]
    real = [i for i in items if i["label"] == "real"]
    cor = [i for i in items if i["label"] == "corrupted" and i["style"] != "running"]
    fab = [i for i in items if i["label"] == "fabricated" and i["style"] != "running"]
    run = [i for i in real if i["style"] == "running"]
    lst = [i for i in real if i["style"] != "running"]
    texts = []
    for _ in range(n):
        body = " ".join(rng.sample(prose, 2))
        words = body.split()
        cut = len(words) // 2
        in_text = [rng.choice(run)["text"], rng.choice(run)["text"]]
        body = " ".join(words[:cut]) + " " + in_text[0] + " " + " ".join(words[cut:]) + " " + in_text[1]
        entries = [rng.choice(lst)["text"], rng.choice(cor)["text"], rng.choice(fab)["text"]]
        rng.shuffle(entries)
        entries = [re.sub(r"^\[\d+\]\s*", "", e) for e in entries]
        refs = "\n".join(f"[{k + 1}] {e}" for k, e in enumerate(entries))
        texts.append(f"{body}\n\nReferences\n{refs}\n")
    return texts


def measure_latency(guard: CitationGuardrail, texts: list[str]) -> dict:
    """p50 / p95 of scan time (ms), cold (first pass) and warm (second pass)."""
    out = {}
    with guard.db._lock:
        guard.db._cache.clear()  # "cold": no query embedding cached (the accuracy runs filled the cache)
    for phase in ("cold", "warm"):
        times = []
        for t in texts:
            t0 = time.perf_counter()
            guard.scan(t, Direction.OUTPUT)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[phase] = {"p50": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))], "max": times[-1]}
    out["words"] = statistics.mean(len(t.split()) for t in texts)
    out["citations"] = statistics.mean(len(guard.check(t)) for t in texts[:20])
    return out


def prose_false_alarms(guard: CitationGuardrail, n: int) -> dict:
    """Citations reported (and bad ones) in ``n`` paragraphs of human prose that cite nothing."""
    paras = [json.loads(line)["text"] for line in NOVELS.read_text().splitlines()[:n]]
    found = bad = texts_bad = 0
    for p in paras:
        cits = guard.check(p)
        found += len(cits)
        b = sum(1 for c in cits if c["verdict"] in ("not_found", "mismatch"))
        bad += b
        texts_bad += b > 0
    return {"paragraphs": n, "citations_found": found, "bad": bad, "paragraphs_flagged": texts_bad}


# --------------------------------------------------------------------------- report


def fmt(x: float) -> str:
    """Format a ratio as a percentage with one decimal."""
    return "n/a" if x != x else f"{100 * x:.1f}%"


def report(acc: dict, acc_big: dict | None, lat: dict, prose: dict, args, elapsed: float) -> str:
    """Markdown section for ``docs/benchmarks.md``."""
    a = acc["all"]
    lines = [
        "",
        f"`python benchmarks/bench_citations.py --n-real {args.n_real} --seed {args.seed}` -- "
        f"{datetime.date.today().isoformat()}, 2-core CPU, 24 GiB, no GPU; total run {elapsed:.0f} s.",
        "",
        f"Labelled set from `ir_anthology.jsonl` (3,909 records): {a['n_real']} real, {a['n_corrupted']} one-field-corrupted "
        f"(half wrong year, half a wrong author), {a['n_fabricated']} fabricated (half recombined title halves under the first "
        "record's authors, half real authors with an invented title); each rendered in APA, ACM, numbered IEEE list or "
        "author-year running text with a quoted title. Database: the 3,909 records.",
        "",
        "| style | not_found precision | not_found recall (fabricated) | mismatch accuracy (year / authors) | false alarms on real | real verified | not extracted |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("all",) + STYLES:
        m = acc[key]
        lines.append(
            f"| {key} | {fmt(m['nf_precision'])} | {fmt(m['nf_recall'])} | {fmt(m['mismatch_acc'])} "
            f"({fmt(m['mismatch_year'])} / {fmt(m['mismatch_authors'])}) | {fmt(m['real_false_alarm'])} | "
            f"{fmt(m['real_verified'])} | {m['missed']} |"
        )
    if acc_big is not None:
        b = acc_big["all"]
        lines += [
            "",
            f"Same set against the 20,000-record database (with perturbed near-duplicate titles): not_found "
            f"precision {fmt(b['nf_precision'])}, recall {fmt(b['nf_recall'])}, mismatch accuracy "
            f"{fmt(b['mismatch_acc'])}, false alarms on real {fmt(b['real_false_alarm'])}.",
        ]
    lines += [
        "",
        f"Human prose without citations ({prose['paragraphs']} British-novel paragraphs): {prose['citations_found']} "
        f"citations extracted, {prose['bad']} reported bad, {prose['paragraphs_flagged']} paragraphs flagged.",
        "",
        f"Latency of `scan` per output (~{lat['words']:.0f} words, {lat['citations']:.1f} citations: 3 real, 1 corrupted, "
        f"1 fabricated) against 20,000 records, {args.n_latency} distinct outputs:",
        "",
        "| pass | p50 | p95 | max |",
        "|---|---|---|---|",
        f"| cold (embeddings not cached) | {lat['cold']['p50']:.1f} ms | {lat['cold']['p95']:.1f} ms | {lat['cold']['max']:.1f} ms |",
        f"| warm (same texts again) | {lat['warm']['p50']:.1f} ms | {lat['warm']['p95']:.1f} ms | {lat['warm']['max']:.1f} ms |",
        "",
        f"1-minute load average when the latency run ended: {__import__('os').getloadavg()[0]:.1f} on 2 cores "
        "(other engineers' jobs share the machine; an unloaded run measured cold p50 21.9 ms / warm p50 4.0 ms).",
        "",
        "Aims (issue 5): precision >= 95%, recall >= 90% on fabricated, <= 2% false alarms on real, p50 <= 30 ms. "
        "The machine is shared with other jobs, so latency varies between runs.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and print (optionally write) the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-real", type=int, default=300, help="real citations (as many corrupted and fabricated)")
    parser.add_argument("--n-latency", type=int, default=100, help="outputs for the latency measurement")
    parser.add_argument("--size", type=int, default=20000, help="records of the latency database")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/greenlist-bench-citations"),
        help="where to keep the embedded 20k database between runs ('' to disable)",
    )
    parser.add_argument("--skip-big-accuracy", action="store_true")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if not CITATIONS.is_file():
        sys.exit(f"missing {CITATIONS}; the shared data folder is required")
    t0 = time.time()
    rng = random.Random(args.seed)
    records = load_file(CITATIONS)
    items = build_items(records, args.n_real, rng)
    cache = args.cache if str(args.cache) else None
    if cache is not None and (cache / "citations" / "ir-bench" / "meta.json").is_file():
        small = CitationDatabase.load("ir-bench", cache)
    else:
        small = CitationDatabase.build("ir-bench", records, progress=True)
        if cache is not None:
            small.save(cache)
    guard = CitationGuardrail(CitationGuardrailConfig(), database=small)
    acc = evaluate(guard, items)
    print(json.dumps(acc["all"], indent=1))
    wrong = [
        i
        for i in items
        if (i["label"] == "fabricated") != (i["verdict"] == "not_found")
        or (i["label"] == "corrupted" and i["field"] not in i["fields"])
    ]
    for i in wrong[:25]:
        print(f"  {i['label']:10s} {i.get('field', ''):7s} {i['verdict']:10s} {i['fields']} {i['text'][:150]}")
    prose = prose_false_alarms(guard, 1000)
    print(prose)
    big = big_database(records, args.size, rng, cache)
    big_guard = CitationGuardrail(CitationGuardrailConfig(), database=big)
    acc_big = None if args.skip_big_accuracy else evaluate(big_guard, [dict(i) for i in items])
    if acc_big:
        print("20k:", json.dumps(acc_big["all"]))
    # latency outputs use fresh fabricated citations (not seen by the accuracy runs)
    fresh = build_items(records, 120, random.Random(args.seed + 1))
    lat = measure_latency(big_guard, latency_outputs(fresh, rng, args.n_latency))
    print(json.dumps(lat, indent=1))
    section = report(acc, acc_big, lat, prose, args, time.time() - t0)
    print(section)
    if args.write_docs:
        write_section("Citation checking", section)


if __name__ == "__main__":
    main()
