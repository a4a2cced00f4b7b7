"""Citation-checking guardrail: flag fabricated references against a verified citation database.

Every citation in a text (see :mod:`guardrails.citations.extract`) is checked
against the operator's databases (:mod:`guardrails.citations.database`, built
with ``greenlist citations load``) and gets a verdict (see
:mod:`guardrails.citations.verify`): ``verified``, ``mismatch``,
``not_found`` or ``unverifiable``.

Score: the share of *checkable* citations (verdict ``verified``, ``mismatch``
or ``not_found``) whose verdict is ``not_found`` or ``mismatch``; 0 when the
text has no checkable citation. The default threshold (0.01) therefore fires
on the presence of any bad citation; a threshold of 0.5 fires only when at
least half of them are bad.

Actions: ``annotate`` (decision ``allow``; verdicts in ``details``), ``flag``,
``strip`` (remove the citations whose verdict is in ``strip_verdicts`` --
whole lines for reference-list entries), ``disclaim`` (append a notice
listing the unverified references), ``block``.

References: LLM Guard's scanner interface; reference checkers such as
refchecker / citecheck (offline, web APIs) which this replaces inline.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from typing import Any, ClassVar, Literal

from pydantic import Field

from guardrails.base import Direction, Guardrail, GuardrailConfig, GuardrailResult

DEFAULT_DISCLAIMER = (
    "Note: {bad} of {total} references in this answer could not be verified against the citation "
    "database and may be inaccurate or fabricated. Check them before relying on them:"
)


log = logging.getLogger("greenlist.citations")


class CitationGuardrailConfig(GuardrailConfig):
    """Policy entry of the citation guardrail.

    Attributes:
        type: ``"citations"``.
        databases: Names of the databases to check against (as given to
            ``greenlist citations load --name``); ``None`` = every loaded one.
        action: ``annotate`` (default), ``flag``, ``strip``, ``disclaim`` or ``block``.
        threshold: Score (share of bad citations, see module doc) at which the
            action fires; default 0.01 = any not_found / mismatch citation.
        disclaimer: Notice appended by ``disclaim``; ``{bad}`` and ``{total}``
            are replaced by counts. The offending citations are listed after it.
        strip_verdicts: Verdicts removed by ``strip`` (default: ``not_found``).
        strip_replacement: Text put in place of a stripped in-text citation.
        home: ``GREENLIST_HOME`` override (databases live in ``<home>/citations``).
        title_match: Title similarity (0-100) for a candidate to be the cited work.
        title_close: Lower title similarity accepted when authors and year agree
            (reported as ``mismatch`` of the ``title`` field).
    """

    type: Literal["citations"] = "citations"
    databases: list[str] | None = None
    action: Literal["annotate", "flag", "strip", "disclaim", "block"] = "annotate"
    threshold: float = Field(0.01, ge=0.0, le=1.0)
    disclaimer: str = DEFAULT_DISCLAIMER
    strip_verdicts: list[Literal["not_found", "mismatch"]] = Field(default_factory=lambda: ["not_found"])
    strip_replacement: str = ""
    home: str | None = None
    title_match: float = Field(90.0, ge=50.0, le=100.0)
    title_close: float = Field(80.0, ge=50.0, le=100.0)


class CitationGuardrail(Guardrail):
    """Checks every citation of a text against the configured citation databases.

    The databases are loaded (and merged) once, at construction; ``scan`` is
    thread-safe (read-only indexes, locked embedding cache) and makes at most
    one batched encoder call per text.

    With ``databases: null`` and no database loaded yet, the guardrail
    starts and every scan returns score 0 with a ``note`` in ``details`` (so
    the default policy works on a fresh install).

    Raises (at construction):
        FileNotFoundError: when a database named in ``databases`` does not
            exist (run ``greenlist citations load FILE --name NAME``).
    """

    Config: ClassVar[type[GuardrailConfig]] = CitationGuardrailConfig
    streaming: ClassVar[bool] = False

    def __init__(self, config: CitationGuardrailConfig, database=None) -> None:
        """Build the guardrail; ``database`` (a ``CitationDatabase``) overrides loading from disk (tests, benchmarks)."""
        super().__init__(config)
        from guardrails.citations.database import list_databases, load_databases
        from guardrails.citations.verify import VerifyParams

        if database is None and config.databases is None and not list_databases(config.home):
            self.db = None  # nothing loaded yet: the default policy must still start (scan is a no-op)
        else:
            self.db = database if database is not None else load_databases(config.databases, config.home)
        self.params = VerifyParams(title_match=config.title_match, title_close=config.title_close)
        self._follow_disk = database is None  # pick up `greenlist citations load` without a restart
        self._lock = threading.Lock()
        self._checked_at = self.clock.monotonic()
        self._signature = self._disk_signature()

    def _disk_signature(self) -> tuple[tuple[str, int], ...]:
        """Names and ``meta.json`` modification times of the databases this guardrail reads."""
        from guardrails.citations.database import list_databases

        wanted = self.config.databases
        return tuple(
            (m["name"], os.stat(os.path.join(m["path"], "meta.json")).st_mtime_ns)
            for m in list_databases(self.config.home)
            if wanted is None or m["name"] in wanted
        )

    def refresh(self, interval_s: float = 1.0) -> None:
        """Reload the databases if they changed on disk (checked at most every ``interval_s`` seconds).

        A database loaded or removed with ``greenlist citations`` while the gateway runs is used from the
        next scan on; if reloading fails, the previous databases keep serving and the error is logged.
        """
        if not self._follow_disk or self.clock.monotonic() - self._checked_at < interval_s:
            return
        with self._lock:
            if self.clock.monotonic() - self._checked_at < interval_s:
                return
            self._checked_at = self.clock.monotonic()
            try:
                signature = self._disk_signature()
                if signature != self._signature:
                    from guardrails.citations.database import load_databases

                    self.db = load_databases(self.config.databases, self.config.home) if signature else None
                    self._signature = signature
            except (OSError, ValueError) as exc:
                log.warning("citation databases changed but could not be reloaded (keeping the old ones): %s", exc)

    def check(self, text: str) -> list[dict[str, Any]]:
        """Extract and verify the citations of ``text``; returns their JSON objects (see :meth:`scan`)."""
        from guardrails.citations.extract import extract_citations
        from guardrails.citations.verify import verify_citations

        self.refresh()
        db = self.db
        if db is None:
            return []
        checks = verify_citations(extract_citations(text), db, self.params)
        return [c.to_dict(db) for c in checks]

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Check the citations of ``text``.

        Returns:
            A result whose ``details["citations"]`` lists one object per
            citation: ``text``, ``span`` (``[start, end)`` character offsets),
            ``kind``, ``verdict``, ``match`` (best record or ``None``),
            ``fields`` (mismatch) and ``nearest`` (not_found). ``details["counts"]``
            counts verdicts. ``score`` is the share of bad checkable citations.
            ``sanitized_text`` is set for ``strip`` / ``disclaim`` when fired.
        """
        cits = self.check(text)
        if self.db is None:
            return self.fired(
                0.0,
                {
                    "citations": [],
                    "databases": None,
                    "note": "no citation database loaded (greenlist citations load FILE)",
                },
            )
        counts = Counter(c["verdict"] for c in cits)
        checkable = counts["verified"] + counts["mismatch"] + counts["not_found"]
        bad = counts["mismatch"] + counts["not_found"]
        score = bad / checkable if checkable else 0.0
        details: dict[str, Any] = {
            "citations": cits,
            "counts": {v: counts[v] for v in ("verified", "mismatch", "not_found", "unverifiable")},
            "databases": self.db.name,
        }
        sanitized = None
        if self.config.action == "strip":
            sanitized = strip_citations(text, cits, self.config.strip_verdicts, self.config.strip_replacement)
        elif self.config.action == "disclaim":
            sanitized = disclaim(text, cits, self.config.disclaimer)
        return self.fired(score, details, sanitized)


def strip_citations(
    text: str,
    citations: list[dict[str, Any]],
    verdicts: list[str] | tuple[str, ...] = ("not_found",),
    replacement: str = "",
) -> str:
    """Remove the citations whose verdict is in ``verdicts`` from ``text``.

    Reference-list entries lose their whole line; in-text citations are
    replaced by ``replacement`` and the surrounding punctuation is tidied
    (empty parentheses, dangling ``;`` separators, doubled spaces).

    Args:
        text: The scanned text.
        citations: ``details["citations"]`` from :meth:`CitationGuardrail.scan`.
        verdicts: Verdicts to remove.
        replacement: Text that replaces a removed in-text citation.

    Returns:
        The rewritten text (``text`` unchanged when nothing is removed).
    """
    spans = []
    for c in citations:
        if c["verdict"] not in verdicts:
            continue
        a, b = c["span"]
        if c.get("kind") == "reference":
            line_start = text.rfind("\n", 0, a) + 1
            line_end = text.find("\n", b)
            spans.append((line_start, len(text) if line_end < 0 else line_end + 1, None))
        else:
            spans.append((a, b, replacement))
    if not spans:
        return text
    out = text
    for a, b, rep in sorted(spans, reverse=True):
        out = out[:a] + ("" if rep is None else (rep or "\x00")) + out[b:]
    # tidy the places where something was removed
    out = re.sub(r"\(\s*(?:(?:e\.g\.|i\.e\.|see|cf\.)\s*,?\s*)?(?:\x00\s*[;,]?\s*)+\)", "\x00", out)
    out = re.sub(r"\x00\s*;\s*", "", out)
    out = re.sub(r";\s*\x00", "", out)
    out = re.sub(r"[ \t]*\x00[ \t]*(?=[,.;:!?)])", "", out)
    out = re.sub(r"[ \t]*\x00[ \t]*", " ", out)
    out = re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", out)
    return out.replace("\x00", "")


def disclaim(text: str, citations: list[dict[str, Any]], disclaimer: str = DEFAULT_DISCLAIMER) -> str:
    """Append ``disclaimer`` and a list of the ``not_found`` / ``mismatch`` citations to ``text``.

    Returns ``text`` unchanged when every citation checked out.
    """
    bad = [c for c in citations if c["verdict"] in ("not_found", "mismatch")]
    if not bad:
        return text
    total = sum(1 for c in citations if c["verdict"] != "unverifiable")
    lines = [disclaimer.replace("{bad}", str(len(bad))).replace("{total}", str(total))]
    for c in bad:
        what = (
            "not found in the citation database"
            if c["verdict"] == "not_found"
            else (f"{', '.join(c.get('fields', []))} do not match the cited work")
        )
        snippet = c["text"] if len(c["text"]) <= 160 else c["text"][:157] + "..."
        lines.append(f"- {snippet} ({what})")
    return text.rstrip() + "\n\n" + "\n".join(lines) + "\n"


__all__ = ["CitationGuardrail", "CitationGuardrailConfig", "strip_citations", "disclaim", "DEFAULT_DISCLAIMER"]
