"""Training corpus for the default toxicity head, read from the shared data folder.

Sources (see ``/work/shared/data/README.md``): Davidson et al. 2017 tweets
(hate / offensive / neither), OLID (OffensEval 2019 training split) and
Jigsaw's identity-term sentence templates (Dixon et al. 2018). Each row gets a
label per category; ``nan`` means "this source says nothing about this
category" and the row is left out of that head's training.

Category mapping (OpenAI moderation names where one exists):

=============  ==========================================================
toxicity       Davidson hate or offensive; OLID OFF; Jigsaw ``toxic``
hate           Davidson class 0; OLID OFF/TIN/GRP; Jigsaw toxic statements
               about an identity group (``being_adj``, ``am_hate_adj``,
               ``verb_adj``)
harassment     OLID OFF/TIN/IND; Jigsaw toxic sentences aimed at a person
               (``name_adj``, ``you_are_adj``, ``you_occupation``)
profanity      Davidson offensive (class 1); OLID OFF/UNT (untargeted
               profanity). Not an OpenAI category (Greenlist extension).
=============  ==========================================================
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CATEGORIES = ("toxicity", "hate", "harassment", "profanity")
NAN = float("nan")


def shared_dir() -> Path:
    """Folder of the shared toxicity CSVs (``$GREENLIST_SHARED_DATA/toxicity`` or
    ``<repo>/../shared/data/toxicity``)."""
    root = os.environ.get("GREENLIST_SHARED_DATA")
    if root:
        return Path(root) / "toxicity"
    from guardrails.toxicity.training.splits import data_root  # walks up from the repo (git worktrees)

    return data_root() / "toxicity"


@dataclass
class Corpus:
    """Texts with per-category labels.

    Attributes:
        texts: Raw texts (not yet passed through :func:`prepare`), length N.
        source: Corpus name per row (``davidson``, ``olid``, ``jigsaw``), length N.
        group: Finer label per row (e.g. ``olid:OFF/TIN/IND``), length N.
        labels: float array (N, len(CATEGORIES)) of 0/1, ``nan`` = unlabelled.
    """

    texts: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    labels: list[tuple[float, ...]] = field(default_factory=list)

    def add(self, text: str, source: str, group: str, **labels: float) -> None:
        """Append one row; categories missing from ``labels`` are ``nan``."""
        self.texts.append(text)
        self.source.append(source)
        self.group.append(group)
        self.labels.append(tuple(labels.get(c, NAN) for c in CATEGORIES))

    def label_array(self) -> np.ndarray:
        """Labels as a float32 array of shape (N, len(CATEGORIES))."""
        return np.asarray(self.labels, dtype=np.float32)


def _rows_subsampled(
    path: Path, where: tuple[str, str], k: int, rng: random.Random
) -> tuple[list[dict[str, str]], set[int]]:
    """All rows of a CSV, and the ids of at most ``k`` rows drawn by ``rng`` among those with ``row[col] == value``."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    col, value = where
    pool = [r for r in rows if r[col] == value]
    return rows, {id(r) for r in rng.sample(pool, min(k, len(pool)))}


def load_corpus(
    folder: Path | None = None, seed: int = 0, davidson_offensive_max: int = 6000, jigsaw_name_adj_max: int = 2000
) -> Corpus:
    """Read the three CSVs into one :class:`Corpus`.

    Args:
        folder: Directory holding the CSVs (default :func:`shared_dir`).
        seed: Seed of the subsampling below.
        davidson_offensive_max: Keep at most this many Davidson ``offensive``
            tweets (19,190 in the file; they are near-duplicates in style and
            Davidson labels almost every swear word offensive).
        jigsaw_name_adj_max: Keep at most this many of the 72,000 ``name_adj``
            template sentences; all other template types are kept.

    Returns:
        The corpus (about 28k rows with the defaults).

    Raises:
        FileNotFoundError: when a CSV is missing.
    """
    folder = folder or shared_dir()
    rng = random.Random(seed)
    corpus = Corpus()

    rows, keep = _rows_subsampled(folder / "davidson_labeled.csv", ("class", "1"), davidson_offensive_max, rng)
    for r in rows:
        cls = r["class"]
        if cls == "0":
            corpus.add(r["tweet"], "davidson", "davidson:hate", toxicity=1, hate=1)
        elif cls == "1" and id(r) in keep:
            corpus.add(r["tweet"], "davidson", "davidson:offensive", toxicity=1, hate=0, profanity=1)
        elif cls == "2":
            corpus.add(r["tweet"], "davidson", "davidson:neither", toxicity=0, hate=0, harassment=0, profanity=0)

    with open(folder / "olid_train.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            a, b, c = r["subtask_a"], r["subtask_b"], r["subtask_c"]
            g = f"olid:{a}/{b}/{c}"
            if a == "NOT":
                corpus.add(r["tweet"], "olid", g, toxicity=0, hate=0, harassment=0, profanity=0)
            elif b == "UNT":
                corpus.add(r["tweet"], "olid", g, toxicity=1, hate=0, harassment=0, profanity=1)
            elif c == "IND":
                corpus.add(r["tweet"], "olid", g, toxicity=1, hate=0, harassment=1)
            elif c == "GRP":
                corpus.add(r["tweet"], "olid", g, toxicity=1, hate=1)
            else:  # OTH: organisations, events
                corpus.add(r["tweet"], "olid", g, toxicity=1, hate=0)

    rows, keep = _rows_subsampled(
        folder / "jigsaw_templates_en.csv", ("template", "name_adj"), jigsaw_name_adj_max, rng
    )
    for r in rows:
        t = r["template"]
        if t == "name_adj" and id(r) not in keep:
            continue
        g = f"jigsaw:{t}:{r['toxicity']}"
        if r["toxicity"] == "nontoxic":
            corpus.add(r["phrase"], "jigsaw", g, toxicity=0, hate=0, harassment=0, profanity=0)
        elif t in ("being_adj", "am_hate_adj", "verb_adj"):
            corpus.add(r["phrase"], "jigsaw", g, toxicity=1, hate=1, harassment=0)
        elif t == "you_occupation":
            corpus.add(r["phrase"], "jigsaw", g, toxicity=1, hate=0, harassment=1)
        else:  # name_adj, you_are_adj: an insult aimed at one person, naming an identity
            corpus.add(r["phrase"], "jigsaw", g, toxicity=1, harassment=1)
    return corpus
