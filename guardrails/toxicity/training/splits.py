"""Seeded dev/test splits of every evaluation set, per data set and language.

Rows come from ``shared/data/toxicity_extra`` (see its MANIFEST.md for label mapping and licences) and
``shared/data/human_text/british_novels.jsonl``. Official splits are kept where the MANIFEST gives them
(hatemoji_build train/dev/test, hatexplain dev/test, germeval2018 train/test, cold train/dev/test,
poleval2019 train/test); a set with a train split but no dev split gets a dev split of 15 % of its train
rows (seed 13); HateXplain, whose train posts are missing, gets 60 % of its official dev posts as train
(:data:`HATEXPLAIN_TRAIN`); sets without splits (mlma, told_br) get 70 / 15 / 15 % train / dev / test by a
seeded hash of the text. British novels are split by book (half the books test; the other half split again into train
and dev books), so no book is on two sides.
``ag_news_long`` is research / non-commercial data: ``split = "measure"``, used to measure only, never to
train or calibrate.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

SEED = 13
EXTRA_SETS = (
    "hatemoji_build",
    "hatexplain",
    "germeval2018",
    "mlma",
    "cold",
    "told_br",
    "poleval2019_task6",
    "ag_news_long",
)


@dataclass(frozen=True)
class Row:
    """One labelled text.

    Attributes:
        text: The text.
        language: ISO 639-1 code.
        label: 1 toxic, 0 non-toxic.
        category: ``hate`` | ``harassment`` | ``violence`` | ``sexual`` | ``profanity`` | ``none`` | ``unknown``.
        dataset: Source set (``hatemoji_build``, ..., ``british_novels``).
        split: ``train`` | ``dev`` | ``test`` | ``measure``.
    """

    text: str
    language: str
    label: int
    category: str
    dataset: str
    split: str


def data_root() -> Path:
    """The shared data folder: ``$GREENLIST_SHARED_DATA``, else the first ``shared/data`` beside the repo or
    one of its parent folders (a git worktree may sit deeper than the main checkout)."""
    root = os.environ.get("GREENLIST_SHARED_DATA")
    if root:
        return Path(root)
    repo = Path(__file__).resolve().parents[3]
    for parent in repo.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return repo.parent / "shared" / "data"


HATEXPLAIN_TRAIN = 0.6
"""Share of HateXplain's official dev posts (1,922) taken as its train split (seeded hash; the official test split
is kept whole): the shared data holds no HateXplain train posts, and without in-domain rows no model learns its
posts' style (lower-cased, tokenised, placeholders)."""


def _bucket(text: str, seed: int = SEED) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``text``."""
    h = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _split(dataset: str, given: str, text: str) -> str:
    if dataset == "ag_news_long":
        return "measure"
    u = _bucket(text)
    if given in ("", "none"):
        return "train" if u < 0.70 else "dev" if u < 0.85 else "test"
    if given == "train" and dataset in ("germeval2018", "poleval2019_task6"):
        return "dev" if u < 0.15 else "train"
    if given == "dev" and dataset == "hatexplain":  # its official train split is not in the shared data
        return "train" if u < HATEXPLAIN_TRAIN else "dev"
    return given


def load_extra(sets: tuple[str, ...] = EXTRA_SETS) -> list[Row]:
    """Rows of the ``toxicity_extra`` sets with their (official or seeded) split.

    Raises:
        FileNotFoundError: when the shared data folder is missing.
    """
    rows = []
    for name in sets:
        with open(data_root() / "toxicity_extra" / f"{name}.csv", newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                rows.append(
                    Row(
                        r["text"],
                        r["language"],
                        int(r["label"] == "toxic"),
                        r["category"],
                        name,
                        _split(name, r["split"], r["text"]),
                    )
                )
    return rows


ANSWER_WORDS = 150  # an assistant answer's length in words (issue #16's latency goal is set on 150-word answers)


def load_novels() -> list[Row]:
    """British-novel paragraphs (benign prose), split by book: a seeded half of the books is test, the rest is
    split into train and dev books by a second seeded hash."""
    rows = []
    with open(data_root() / "human_text" / "british_novels.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            split = (
                "test" if _bucket(r["doc_id"]) >= 0.5 else "dev" if _bucket(r["doc_id"], SEED + 1) < 0.5 else "train"
            )
            rows.append(Row(r["text"], "en", 0, "none", "british_novels", split))
    return rows


def answer_chunks(rows: list[Row], min_words: int = ANSWER_WORDS) -> list[Row]:
    """Consecutive benign paragraphs joined into answer-length texts (the length of an assistant's answer).

    Args:
        rows: Paragraph rows in file order (e.g. the dev books of :func:`load_novels`).
        min_words: A chunk ends at the first paragraph that brings it to this many words.

    Returns:
        Rows of dataset ``<dataset>_chunks``, same language, label, category and split as the paragraphs (a
        chunk never mixes splits or datasets; a short tail is dropped).
    """
    out: list[Row] = []
    buf: list[str] = []
    for prev, r in zip([None, *rows], rows, strict=False):
        if prev is not None and (prev.split, prev.dataset) != (r.split, r.dataset):
            buf = []
        buf.append(r.text)
        if sum(len(t.split()) for t in buf) >= min_words:
            out.append(Row(" ".join(buf), r.language, r.label, r.category, f"{r.dataset}_chunks", r.split))
            buf = []
    return out


def sample(rows: list[Row], n: int, seed: int = SEED) -> list[Row]:
    """At most ``n`` of ``rows``, the same ones for the same seed (ordered by a seeded hash of the text)."""
    return sorted(rows, key=lambda r: _bucket(r.text, seed))[:n]


def evaluation_rows(per_group: int = 600, prose: int = 800) -> list[Row]:
    """Dev and test rows of every set and language, at most ``per_group`` per (set, language, split, label).

    Long benign prose (British novels, ag_news_long) keeps up to ``prose`` rows per split instead.

    Returns:
        Rows with split ``dev``, ``test`` or ``measure`` (ag_news_long), seeded so every model is scored on
        the same rows.
    """
    groups: dict[tuple[str, str, str, int], list[Row]] = {}
    for r in load_extra() + load_novels():
        if r.split in ("dev", "test", "measure"):
            groups.setdefault((r.dataset, r.language, r.split, r.label), []).append(r)
    out = []
    for key in sorted(groups):
        out += sample(groups[key], prose if key[0] in ("british_novels", "ag_news_long") else per_group)
    return out


__all__ = ["Row", "load_extra", "load_novels", "answer_chunks", "evaluation_rows", "sample", "data_root", "SEED"]
