"""What would a policy change flip? Replay texts through an old and a new policy and compare.

``greenlist policy diff OLD NEW --replay SOURCE`` runs every text of SOURCE
through both policies' guardrails directly (no generation) in the given
direction and reports:

* the transition matrix of decisions (old → new), with the headline
  **allow→block** and **block→allow** flips;
* against labels, when SOURCE has them: each policy's accuracy, and the
  **negative flip rate** (NFR) -- the share of samples the old policy got
  right and the new one gets wrong -- and the positive flip rate (old wrong,
  new right), after Yan et al., "Positive-Congruent Training: Towards
  Regression-Free Model Updates", CVPR 2021. A new policy can raise accuracy
  and still introduce new errors; the NFR makes them visible, and
  ``--max-negative-flip-rate`` turns it into a CI gate.

SOURCE is a CSV or JSONL file of texts with optional expected decisions
(labels), or ``audit`` / ``audit:URL`` for the audit log's recorded texts
(only rows of policies with ``audit: {store_text: true}`` have them).

A label is compared in binary form: *positive* (the text should be stopped)
or not. Label values ``block``, ``toxic``, ``offensive``, ``hate``, ``off``,
``1``, ``true``, ``yes`` (or any value in ``block_values``) are positive;
a policy's decision is positive when it is in ``positive_decisions``
(default: ``block``).

Long module: reading a replay set, replaying it through two policies and rendering the report are one command's steps, kept in order.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.serving.pipeline import Pipeline
from guardrails import Direction

TEXT_COLUMNS = ("text", "prompt", "content", "tweet", "comment_text", "input")
LABEL_COLUMNS = ("expected", "expected_decision", "decision", "label", "subtask_a", "toxic", "class")
POSITIVE_LABELS = {"block", "blocked", "toxic", "offensive", "hate", "off", "1", "true", "yes", "unsafe", "positive"}
DECISIONS = ("allow", "flag", "redact", "block")


class ReplayError(ValueError):
    """The replay source cannot be read (missing file, unknown columns, bad JSON line)."""


@dataclass
class ReplayItem:
    """One text to replay.

    Attributes:
        text: The text.
        direction: ``input`` or ``output``.
        label: ``True`` when it should be stopped, ``False`` when not, ``None`` when unlabelled.
        ref: Where it came from (row number or audit request id).
    """

    text: str
    direction: Direction
    label: bool | None
    ref: str


def _positive_label(value: Any, block_values: set[str] | None) -> bool | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    v = str(value).strip().lower()
    if block_values:
        return v in block_values
    if isinstance(value, bool):
        return value
    return v in POSITIVE_LABELS


def read_replay(
    source: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    block_values: list[str] | None = None,
    direction: str = "input",
    sample: int | None = None,
    seed: int = 0,
    audit_url: str | None = None,
) -> list[ReplayItem]:
    """Read the texts (and labels) of a replay source.

    Args:
        source: A ``.csv`` / ``.jsonl`` path, or ``audit`` / ``audit:URL``.
        text_column: Column with the text (default: the first of :data:`TEXT_COLUMNS` present).
        label_column: Column with the expected decision or label (default: the
            first of :data:`LABEL_COLUMNS` present; none: unlabelled). ``-`` = no labels.
        block_values: Label values meaning "should be stopped" (case-insensitive),
            e.g. ``["0", "1"]`` for Davidson's ``class``; default :data:`POSITIVE_LABELS`.
        direction: Direction to check file texts in (audit rows keep their own).
        sample: Keep a seeded random sample of this many items (None: all).
        seed: Seed of the sample.
        audit_url: Audit database for ``audit`` (default: the gateway's setting).

    Returns:
        The items, in source order (sampled ones too).

    Raises:
        ReplayError: when the source cannot be read.
    """
    bv = {b.strip().lower() for b in block_values} if block_values else None
    items: list[ReplayItem] = []
    if source == "audit" or source.startswith("audit:"):
        from gateway.observability.audit import AuditQuery, open_engine, query_engine

        url = source[len("audit:") :] if source.startswith("audit:") else audit_url
        if not url:
            from gateway.observability.audit import default_audit_url
            from gateway.settings import Settings

            settings = Settings()
            url = settings.audit_url or default_audit_url(settings.home)
        engine = open_engine(url)
        try:
            rows = query_engine(engine, AuditQuery(shadow=False, with_text=True, limit=100_000))
        finally:
            engine.dispose()
        for r in reversed(rows):
            items.append(ReplayItem(r["text"], Direction(r["direction"]), None, r["request_id"]))
    else:
        path = Path(source)
        if not path.exists():
            raise ReplayError(f"{source}: no such file")
        records: list[dict[str, Any]] = []
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            with path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise ReplayError(f"{source}:{n}: invalid JSON: {exc.msg}") from None
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                records = list(csv.DictReader(fh))
        if not records:
            raise ReplayError(f"{source}: no rows")
        keys = list(records[0].keys())
        tcol = text_column or next((c for c in TEXT_COLUMNS if c in keys), None)
        if tcol is None or tcol not in keys:
            raise ReplayError(f"{source}: no text column (have {keys}); name it with --text-column")
        if label_column == "-":
            lcol = None
        else:
            lcol = label_column or next((c for c in LABEL_COLUMNS if c in keys), None)
            if lcol is not None and lcol not in keys:
                raise ReplayError(f"{source}: no label column {lcol!r} (have {keys})")
        d = Direction(direction)
        for n, rec in enumerate(records, 1):
            text = rec.get(tcol)
            if not isinstance(text, str) or not text:
                continue
            label = _positive_label(rec.get(lcol), bv) if lcol else None
            items.append(
                ReplayItem(
                    text, Direction(rec.get("direction", d.value)) if "direction" in rec else d, label, f"row {n}"
                )
            )
    if sample is not None and sample < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), sample))
        items = [items[i] for i in keep]
    return items


@dataclass
class DiffRow:
    """One replayed text: both decisions and scores."""

    item: ReplayItem
    old: str
    new: str
    old_score: float
    new_score: float
    old_error: bool = False
    new_error: bool = False


@dataclass
class DiffReport:
    """The comparison of two policies on one replay set (see the module doc).

    Attributes:
        old, new: ``{"name", "version", "path"}`` of each policy.
        source: The replay source.
        n: Texts replayed.
        labelled: How many had labels.
        transitions: ``{(old decision, new decision): count}``.
        allow_to_block, block_to_allow: Headline flip counts.
        changed: Texts whose decision changed at all.
        old_accuracy, new_accuracy: Against labels (None when unlabelled).
        negative_flips, positive_flips: Counts (old right → new wrong, and the reverse).
        negative_flip_rate, positive_flip_rate: Those counts over ``labelled``.
        seconds: Wall time of the replay.
        old_errors, new_errors: Texts on which a guardrail raised or timed out
            (its ``on_error`` decision was used); non-zero means the
            comparison is partly about faults, not thresholds.
        rows: Every replayed text.
        positive_decisions: Decisions counted as "stopped".
    """

    old: dict[str, Any]
    new: dict[str, Any]
    source: str
    n: int
    labelled: int
    transitions: dict[tuple[str, str], int]
    allow_to_block: int
    block_to_allow: int
    changed: int
    old_accuracy: float | None
    new_accuracy: float | None
    negative_flips: int
    positive_flips: int
    negative_flip_rate: float | None
    positive_flip_rate: float | None
    seconds: float
    positive_decisions: tuple[str, ...] = ("block",)
    old_errors: int = 0
    new_errors: int = 0
    rows: list[DiffRow] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (rows omitted)."""
        return {
            "old": self.old,
            "new": self.new,
            "source": self.source,
            "n": self.n,
            "labelled": self.labelled,
            "transitions": {f"{a}->{b}": c for (a, b), c in sorted(self.transitions.items())},
            "allow_to_block": self.allow_to_block,
            "block_to_allow": self.block_to_allow,
            "changed": self.changed,
            "old_accuracy": self.old_accuracy,
            "new_accuracy": self.new_accuracy,
            "negative_flips": self.negative_flips,
            "positive_flips": self.positive_flips,
            "negative_flip_rate": self.negative_flip_rate,
            "positive_flip_rate": self.positive_flip_rate,
            "positive_decisions": list(self.positive_decisions),
            "seconds": round(self.seconds, 2),
            "old_errors": self.old_errors,
            "new_errors": self.new_errors,
        }


def relax_timeouts(pipeline: Pipeline, seconds: float) -> None:
    """Raise every guardrail's ``timeout_s`` to at least ``seconds`` (a replay has no user waiting; a timeout
    under CPU contention would otherwise show up as an ``on_error`` flip)."""
    for guardrails in pipeline.guardrails.values():
        for g in guardrails:
            if g.config.timeout_s < seconds:
                g.config.timeout_s = seconds


async def _replay(old: Pipeline, new: Pipeline, items: list[ReplayItem], concurrency: int) -> list[DiffRow]:
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(item: ReplayItem) -> DiffRow:
        async with sem:
            a = await old.check(item.text, item.direction)
            b = await new.check(item.text, item.direction)
        score = lambda v: max((r.score for r in v.results), default=0.0)  # noqa: E731
        err = lambda v: any(r.error for r in v.results)  # noqa: E731
        return DiffRow(item, a.decision.value, b.decision.value, float(score(a)), float(score(b)), err(a), err(b))

    return list(await asyncio.gather(*(one(i) for i in items)))


def diff_policies(
    old: Pipeline,
    new: Pipeline,
    items: list[ReplayItem],
    *,
    source: str = "",
    positive_decisions: tuple[str, ...] = ("block",),
    concurrency: int = 2,
) -> DiffReport:
    """Replay ``items`` through ``old`` and ``new`` and compare (blocking; runs its own event loop).

    Args:
        old, new: Compiled policies.
        items: Texts from :func:`read_replay`.
        source: Source name for the report.
        positive_decisions: Decisions that count as stopping a text.
        concurrency: Texts checked at once.

    Returns:
        The :class:`DiffReport`.
    """
    start = time.perf_counter()
    rows = asyncio.run(_replay(old, new, items, concurrency))
    seconds = time.perf_counter() - start
    transitions = Counter((r.old, r.new) for r in rows)
    pos = set(positive_decisions)
    labelled = [r for r in rows if r.item.label is not None]
    old_right = [(r.old in pos) == r.item.label for r in labelled]
    new_right = [(r.new in pos) == r.item.label for r in labelled]
    nf = sum(1 for a, b in zip(old_right, new_right, strict=False) if a and not b)
    pf = sum(1 for a, b in zip(old_right, new_right, strict=False) if b and not a)
    n_l = len(labelled)

    def info(p: Pipeline) -> dict[str, Any]:
        return {"name": p.name, "version": p.version, "path": str(p.loaded.path) if p.loaded.path else None}

    return DiffReport(
        old=info(old),
        new=info(new),
        source=source,
        n=len(rows),
        labelled=n_l,
        transitions=dict(transitions),
        allow_to_block=transitions[("allow", "block")],
        block_to_allow=transitions[("block", "allow")],
        changed=sum(c for (a, b), c in transitions.items() if a != b),
        old_accuracy=sum(old_right) / n_l if n_l else None,
        new_accuracy=sum(new_right) / n_l if n_l else None,
        negative_flips=nf,
        positive_flips=pf,
        negative_flip_rate=nf / n_l if n_l else None,
        positive_flip_rate=pf / n_l if n_l else None,
        seconds=seconds,
        positive_decisions=tuple(positive_decisions),
        old_errors=sum(r.old_error for r in rows),
        new_errors=sum(r.new_error for r in rows),
        rows=rows,
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _snippet(text: str, width: int = 90) -> str:
    one = " ".join(text.split()).replace("|", "\\|")
    return one if len(one) <= width else one[: width - 1] + "…"


def render_markdown(
    report: DiffReport, *, max_negative_flip_rate: float | None = None, examples: int = 5, title: str = "Policy diff"
) -> str:
    """The report as Markdown (what ``--report FILE.md`` writes).

    Args:
        report: The :class:`DiffReport`.
        max_negative_flip_rate: The gate, shown with its outcome when given.
        examples: How many example texts to list per flip kind (0: none).
        title: Heading.
    """
    o, n = report.old, report.new
    lines = [
        f"# {title}",
        "",
        f"- old: `{o['name']}` version `{o['version']}` ({o['path']})",
        f"- new: `{n['name']}` version `{n['version']}` ({n['path']})",
        f"- replay: `{report.source}`: {report.n} texts, {report.labelled} labelled; "
        f"{report.seconds:.1f} s for both policies",
        f"- a decision counts as *stopped* when it is one of: {', '.join(report.positive_decisions)}",
        f"- guardrail errors or timeouts (the entry's `on_error` decision was used): old {report.old_errors}, "
        f"new {report.new_errors}",
        "",
        "## Flips",
        "",
        "| | count | share |",
        "|---|---:|---:|",
        f"| allow → block | {report.allow_to_block} | {_pct(report.allow_to_block / report.n if report.n else None)} |",
        f"| block → allow | {report.block_to_allow} | {_pct(report.block_to_allow / report.n if report.n else None)} |",
        f"| any change | {report.changed} | {_pct(report.changed / report.n if report.n else None)} |",
        "",
        "Decisions, old (rows) → new (columns):",
        "",
        "| old \\ new | " + " | ".join(DECISIONS) + " |",
        "|---|" + "---:|" * len(DECISIONS),
    ]
    for a in DECISIONS:
        lines.append(f"| {a} | " + " | ".join(str(report.transitions.get((a, b), 0)) for b in DECISIONS) + " |")
    if report.labelled:
        lines += [
            "",
            "## Against labels",
            "",
            "| metric | value |",
            "|---|---:|",
            f"| old accuracy | {_pct(report.old_accuracy)} |",
            f"| new accuracy | {_pct(report.new_accuracy)} |",
            f"| negative flips (old right, new wrong) | {report.negative_flips} |",
            f"| **negative flip rate** | **{_pct(report.negative_flip_rate)}** |",
            f"| positive flips (old wrong, new right) | {report.positive_flips} |",
            f"| positive flip rate | {_pct(report.positive_flip_rate)} |",
        ]
        if max_negative_flip_rate is not None:
            passed = (report.negative_flip_rate or 0.0) <= max_negative_flip_rate
            lines += [
                "",
                f"Gate `--max-negative-flip-rate {max_negative_flip_rate}`: "
                f"**{'pass' if passed else 'FAIL'}** (NFR {_pct(report.negative_flip_rate)}).",
            ]
    if examples:
        pos = set(report.positive_decisions)
        groups = [
            (
                "Negative flips (old right, new wrong)",
                [
                    r
                    for r in report.rows
                    if r.item.label is not None and (r.old in pos) == r.item.label and (r.new in pos) != r.item.label
                ],
            ),
            (
                "Positive flips (old wrong, new right)",
                [
                    r
                    for r in report.rows
                    if r.item.label is not None and (r.old in pos) != r.item.label and (r.new in pos) == r.item.label
                ],
            ),
        ]
        if not report.labelled:
            groups = [("Changed decisions", [r for r in report.rows if r.old != r.new])]
        for heading, rows in groups:
            if not rows:
                continue
            lines += [
                "",
                f"## {heading}: first {min(examples, len(rows))} of {len(rows)}",
                "",
                "| ref | label | old (score) | new (score) | text |",
                "|---|---|---|---|---|",
            ]
            for r in rows[:examples]:
                label = "—" if r.item.label is None else ("stop" if r.item.label else "pass")
                lines.append(
                    f"| {r.item.ref} | {label} | {r.old} ({r.old_score:.3f}) | {r.new} ({r.new_score:.3f}) "
                    f"| {_snippet(r.item.text)} |"
                )
    return "\n".join(lines) + "\n"
