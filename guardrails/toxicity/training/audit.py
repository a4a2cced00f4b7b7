"""Quality tools for the toxicity guardrail: fairness audit, FPR calibration, model comparison.

* :func:`fairness_audit` - per identity term and group: false-positive rate on
  non-toxic sentences, false-negative rate on toxic ones, and the subgroup AUC,
  BPSN and BNSP AUCs of Borkan et al., "Nuanced Metrics for Measuring
  Unintended Bias with Real Data for Text Classification" (WWW 2019
  companion), on identity-term sentence templates such as Jigsaw's
  (Dixon et al., AIES 2018).
* :func:`calibrate_threshold` - the lowest threshold that flags at most a
  target share of a benign sample, and the recall it keeps on toxic texts;
  :func:`set_policy_threshold` writes it into a policy YAML file, editing only
  the ``threshold:`` lines of toxicity entries.
* :func:`compare` - accuracy of two models and the negative flip rate of Yan
  et al., "Positive-Congruent Training: Towards Regression-Free Model Updates"
  (CVPR 2021): the share of examples the old model got right and the new one
  gets wrong.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Scorer = Callable[[list[str]], np.ndarray]

# Identity terms of Jigsaw's templates, grouped (Dixon et al. 2018 term list).
IDENTITY_GROUPS: dict[str, tuple[str, ...]] = {
    "gender": ("female", "male", "nonbinary", "trans", "transgender"),
    "sexual_orientation": (
        "bisexual",
        "gay",
        "heterosexual",
        "homosexual",
        "lesbian",
        "lgbt",
        "lgbtq",
        "queer",
        "straight",
    ),
    "religion": ("buddhist", "catholic", "christian", "jewish", "muslim", "protestant", "sikh", "taoist"),
    "race_ethnicity": (
        "african",
        "african american",
        "asian",
        "black",
        "european",
        "hispanic",
        "latina",
        "latino",
        "latinx",
        "middle eastern",
        "white",
    ),
    "nationality": ("american", "canadian", "chinese", "indian", "japanese", "mexican"),
    "age": ("aged", "elderly", "old", "older", "teenage", "young", "younger", "millenial"),
    "disability": ("blind", "deaf", "paralyzed"),
}
TERM_GROUP = {t: g for g, ts in IDENTITY_GROUPS.items() for t in ts}
_TRUE = {"1", "toxic", "off", "true", "yes", "hate", "offensive"}
_TEXT_COLS = ("text", "phrase", "tweet", "comment_text", "sentence")
_LABEL_COLS = ("label", "toxicity", "toxic", "subtask_a", "class")


def _label(value: str, column: str) -> int:
    v = str(value).strip().lower()
    if column == "class":  # Davidson: 0 hate, 1 offensive, 2 neither
        return int(v in ("0", "1"))
    try:
        return int(float(v) >= 0.5)
    except ValueError:
        return int(v in _TRUE)


def read_texts(
    path: Path, text_col: str | None = None, label_col: str | None = None, limit: int | None = None, seed: int = 0
) -> tuple[list[str], list[int] | None]:
    """Read texts (and labels when present) from a ``.txt``, ``.csv``, ``.tsv`` or ``.jsonl`` file.

    A ``.txt`` file is one text per line. Tables use ``text_col`` or the first
    of ``text, phrase, tweet, comment_text, sentence``; labels come from
    ``label_col`` or the first of ``label, toxicity, toxic, subtask_a, class``
    (``toxic``/``OFF``/``1``/``true`` = 1; Davidson's ``class`` 0 or 1 = 1).

    Args:
        path: The file.
        text_col: Text column name.
        label_col: Label column name.
        limit: Keep a seeded random sample of at most this many rows.
        seed: Seed of that sample.

    Returns:
        ``(texts, labels or None)``.

    Raises:
        ValueError: when no text column is found.
    """
    path = Path(path)
    rows: list[dict[str, Any]]
    if path.suffix == ".txt":
        rows = [{"text": line.rstrip("\n")} for line in path.open(encoding="utf-8") if line.strip()]
    elif path.suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))
    if limit and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    cols = rows[0].keys() if rows else []
    tcol = text_col or next((c for c in _TEXT_COLS if c in cols), None)
    if tcol is None:
        raise ValueError(f"{path}: no text column (tried {_TEXT_COLS}); pass --text-col")
    lcol = label_col or next((c for c in _LABEL_COLS if c in cols and c != tcol), None)
    texts = [str(r[tcol]) for r in rows]
    labels = [_label(r[lcol], lcol) for r in rows] if lcol else None
    return texts, labels


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, p))


def identity_term(phrase: str, terms: list[str]) -> str | None:
    """The longest of ``terms`` occurring in ``phrase`` as whole words (case-insensitive), or ``None``."""
    low = phrase.lower()
    for t in terms:  # sorted longest first by the caller
        if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", low):
            return t
    return None


def fairness_audit(
    texts: list[str],
    labels: list[int],
    scores: np.ndarray,
    threshold: float = 0.5,
    identities: list[str | None] | None = None,
    min_count: int = 5,
) -> dict[str, Any]:
    """Per identity term and group bias metrics (Borkan et al. 2019).

    For subgroup ``g`` with non-toxic / toxic sentences ``g-`` / ``g+`` and the
    background (sentences not naming ``g``) ``b-`` / ``b+``: subgroup AUC on
    ``g- ∪ g+``, BPSN (background positive, subgroup negative) AUC on
    ``g- ∪ b+``, BNSP AUC on ``g+ ∪ b-``; FPR = share of ``g-`` scored at or
    above ``threshold``, FNR = share of ``g+`` below it.

    Args:
        texts: N sentences.
        labels: N labels (1 toxic).
        scores: N toxicity scores.
        threshold: Decision threshold for FPR / FNR.
        identities: N identity terms (``None`` = names none); found with
            :func:`identity_term` over :data:`TERM_GROUP` when not given.
        min_count: Terms with fewer sentences are left out.

    Returns:
        ``{"overall": {...}, "terms": {term: metrics}, "groups": {group: metrics}}``
        where metrics = ``{n, fpr, fnr, subgroup_auc, bpsn_auc, bnsp_auc}``
        (``None`` when undefined).
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(scores, dtype=float)
    if identities is None:
        known = sorted(TERM_GROUP, key=len, reverse=True)
        identities = [identity_term(t, known) for t in texts]
    ident = np.asarray([i or "" for i in identities], dtype=object)

    def metrics(m: np.ndarray) -> dict[str, Any]:
        """Metrics of the subgroup selected by mask ``m`` against its background ``~m``."""
        neg, pos = m & (y == 0), m & (y == 1)
        bneg, bpos = ~m & (y == 0), ~m & (y == 1)
        r = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {
            "n": int(m.sum()),
            "fpr": r(float((p[neg] >= threshold).mean())) if neg.any() else None,
            "fnr": r(float((p[pos] < threshold).mean())) if pos.any() else None,
            "subgroup_auc": r(_auc(y[m], p[m])),
            "bpsn_auc": r(_auc(y[neg | bpos], p[neg | bpos])),
            "bnsp_auc": r(_auc(y[pos | bneg], p[pos | bneg])),
        }

    terms = {t: metrics(ident == t) for t in sorted(set(ident) - {""}) if (ident == t).sum() >= min_count}
    groups = {}
    for g in sorted({TERM_GROUP.get(t, "other") for t in terms}):
        m = np.isin(ident, [t for t in terms if TERM_GROUP.get(t, "other") == g])
        groups[g] = metrics(m)
    overall = {
        "n": len(y),
        "auc": None if _auc(y, p) is None else round(_auc(y, p), 4),
        "fpr": round(float((p[y == 0] >= threshold).mean()), 4) if (y == 0).any() else None,
        "fnr": round(float((p[y == 1] < threshold).mean()), 4) if (y == 1).any() else None,
        "threshold": threshold,
    }
    return {"overall": overall, "terms": terms, "groups": groups}


def gap(report: dict[str, Any], metric: str = "bpsn_auc", level: str = "groups") -> tuple[float, str, str]:
    """Best-minus-worst spread of ``metric`` over ``level`` (``groups`` or ``terms``).

    Returns:
        ``(gap, best name, worst name)``; for FPR / FNR "best" is the lowest.
    """
    vals = {k: v[metric] for k, v in report[level].items() if v.get(metric) is not None}
    if not vals:
        return 0.0, "", ""
    lower_better = metric in ("fpr", "fnr")
    best = (min if lower_better else max)(vals, key=vals.get)
    worst = (max if lower_better else min)(vals, key=vals.get)
    return round(abs(vals[best] - vals[worst]), 4), best, worst


def calibrate_threshold(
    benign_scores: np.ndarray, target_fpr: float, toxic_scores: np.ndarray | None = None
) -> dict[str, Any]:
    """Lowest threshold flagging at most ``target_fpr`` of the benign sample.

    With the benign scores sorted high to low, ``k = floor(target_fpr * n)``
    texts may be flagged; the threshold is the smallest value above the
    ``(k + 1)``-th highest score, so ties at that score are not flagged.

    Args:
        benign_scores: Toxicity scores of a sample of benign traffic.
        target_fpr: Allowed share flagged, in [0, 1).
        toxic_scores: Optional scores of labelled toxic texts.

    Returns:
        ``{"threshold", "benign_n", "benign_flagged_rate", "target_fpr",
        "toxic_n", "recall"}`` (recall ``None`` without toxic texts).

    Raises:
        ValueError: for an empty sample or a target outside [0, 1).
    """
    b = np.sort(np.asarray(benign_scores, dtype=float))[::-1]
    if len(b) == 0 or not 0.0 <= target_fpr < 1.0:
        raise ValueError("need a non-empty benign sample and 0 <= target_fpr < 1")
    k = int(np.floor(target_fpr * len(b) + 1e-9))
    thr = float(np.nextafter(b[k], np.inf))
    thr = min(max(thr, 0.0), 1.0)
    out = {
        "threshold": round(thr, 6) if round(thr, 6) >= thr else thr,
        "target_fpr": target_fpr,
        "benign_n": int(len(b)),
        "benign_flagged_rate": round(float((b >= thr).mean()), 6),
        "toxic_n": 0,
        "recall": None,
    }
    if toxic_scores is not None and len(toxic_scores):
        t = np.asarray(toxic_scores, dtype=float)
        out.update(toxic_n=int(len(t)), recall=round(float((t >= thr).mean()), 4))
    return out


_ITEM = re.compile(r"^(\s*)-\s")
_THRESHOLD = re.compile(r"^(\s*)threshold:\s*([^#\s]*)(\s*#.*)?$")
_TYPE_TOX = re.compile(r"^\s*(?:-\s+)?type:\s*[\"']?toxicity[\"']?\s*(#.*)?$")


def set_policy_threshold(
    path: Path, threshold: float, directions: tuple[str, ...] = ("input", "output"), write: bool = True
) -> list[str]:
    """Set ``threshold`` of every toxicity entry in ``directions`` of a policy YAML file.

    Only the entries' ``threshold:`` lines change (or one is inserted after
    ``type: toxicity``); comments, order and every other line are kept.

    Args:
        path: Policy file.
        threshold: New value.
        directions: Top-level lists to edit (``input``, ``output``).
        write: Write the file (else only compute the change).

    Returns:
        The new file text's changed lines (for the report).

    Raises:
        ValueError: when the file has no toxicity entry in ``directions``, or
            the result does not parse back with that threshold.
    """
    import yaml

    lines = Path(path).read_text("utf-8").splitlines(keepends=True)
    section = None
    out: list[str] = []
    changed: list[str] = []
    i = 0
    value = f"{threshold:.6g}"
    while i < len(lines):
        line = lines[i]
        top = re.match(r"^(\w[\w-]*):", line)
        if top:
            section = top.group(1)
        m = _ITEM.match(line)
        if m and section in directions:
            indent = len(m.group(1))
            j = i + 1
            while j < len(lines) and (
                not lines[j].strip()
                or lines[j].lstrip().startswith("#")
                or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                j += 1
            item = lines[i:j]
            if any(_TYPE_TOX.match(x) for x in item):
                key_indent = indent + 2
                done = False
                for n, x in enumerate(item):
                    body = x[:key_indent].replace("-", " ") + x[key_indent:] if n == 0 else x
                    t = _THRESHOLD.match(body)
                    if t and len(t.group(1)) == key_indent:
                        nl = "\n" if x.endswith("\n") else ""
                        item[n] = x[: x.index("threshold:")] + f"threshold: {value}" + (t.group(3) or "") + nl
                        changed.append(item[n].rstrip())
                        done = True
                if not done:
                    k = next(n for n, x in enumerate(item) if _TYPE_TOX.match(x))
                    item.insert(k + 1, " " * key_indent + f"threshold: {value}\n")
                    changed.append(item[k + 1].rstrip())
            out += item
            i = j
            continue
        out.append(line)
        i += 1
    if not changed:
        raise ValueError(f"{path}: no toxicity entry under {directions}")
    text = "".join(out)
    data = yaml.safe_load(text)
    for d in directions:
        section = data.get(d) or []
        for e in section.get("guardrails") or [] if isinstance(section, dict) else section:  # input: {mode, guardrails}
            if isinstance(e, dict) and e.get("type") == "toxicity" and abs(float(e["threshold"]) - threshold) > 1e-6:
                raise ValueError(f"{path}: could not set the threshold of a toxicity entry under {d}")
    if write:
        Path(path).write_text(text, encoding="utf-8")
    return changed


def compare(
    texts: list[str],
    labels: list[int],
    old_scores: np.ndarray,
    new_scores: np.ndarray,
    old_threshold: float = 0.5,
    new_threshold: float = 0.5,
    show: int = 20,
) -> dict[str, Any]:
    """Accuracy of two models and their negative / positive flip rates (Yan et al. 2021).

    Args:
        texts: N texts.
        labels: N labels (1 toxic).
        old_scores: N toxicity scores of the old model.
        new_scores: N toxicity scores of the new model.
        old_threshold: Decision threshold of the old model.
        new_threshold: Decision threshold of the new model.
        show: How many flipped examples of each kind to list.

    Returns:
        ``{"n", "old_accuracy", "new_accuracy", "negative_flip_rate",
        "positive_flip_rate", "negative_flips": [...], "positive_flips": [...]}``;
        flip rates are shares of all N examples; each flip lists ``text``,
        ``label`` and both scores, largest score change first.
    """
    y = np.asarray(labels, dtype=int)
    o = np.asarray(old_scores, dtype=float)
    n = np.asarray(new_scores, dtype=float)
    ok_o = (o >= old_threshold).astype(int) == y
    ok_n = (n >= new_threshold).astype(int) == y
    neg = np.flatnonzero(ok_o & ~ok_n)
    pos = np.flatnonzero(~ok_o & ok_n)

    def listing(idx: np.ndarray) -> list[dict[str, Any]]:
        """The ``show`` flips of ``idx`` with the largest score change."""
        idx = sorted(idx, key=lambda i: -abs(n[i] - o[i]))[:show]
        return [
            {"text": texts[i], "label": int(y[i]), "old": round(float(o[i]), 4), "new": round(float(n[i]), 4)}
            for i in idx
        ]

    return {
        "n": int(len(y)),
        "old_accuracy": round(float(ok_o.mean()), 4),
        "new_accuracy": round(float(ok_n.mean()), 4),
        "negative_flip_rate": round(float(len(neg) / len(y)), 4),
        "positive_flip_rate": round(float(len(pos) / len(y)), 4),
        "negative_flips_n": int(len(neg)),
        "positive_flips_n": int(len(pos)),
        "negative_flips": listing(neg),
        "positive_flips": listing(pos),
    }
