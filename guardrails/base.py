"""The one small interface every guardrail implements.

A guardrail is built once from its policy entry (a pydantic ``GuardrailConfig``
subclass) and then scans texts::

    result = guardrail.scan(text, Direction.OUTPUT)

``scan`` is synchronous, CPU-bound and must be thread-safe: the gateway calls it
from a worker thread. It never raises for ordinary input; the pipeline turns any
exception into a failed result and applies the entry's ``on_error`` decision.

The shape follows LLM Guard's scanners (one ``scan`` that returns a risk score,
a verdict and optionally a sanitized text), with the decision levels of the
Greenlist gateway: ``allow < flag < redact < block``.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from greenlist.clock import SYSTEM_CLOCK, Clock


class Direction(str, enum.Enum):
    """Which side of the model a text comes from: the prompt or the output."""

    INPUT = "input"
    OUTPUT = "output"


class Decision(str, enum.Enum):
    """What the gateway does with a text, in increasing severity.

    ``allow`` passes it, ``flag`` passes it and records the finding, ``redact``
    passes a rewritten text (spans removed, a notice appended), ``block``
    refuses it. Combine several with :func:`most_severe`.
    """

    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        """Rank of the decision: 0 for ``allow`` up to 3 for ``block``."""
        return _SEVERITY[self]


_SEVERITY = {Decision.ALLOW: 0, Decision.FLAG: 1, Decision.REDACT: 2, Decision.BLOCK: 3}


def most_severe(decisions: list[Decision] | tuple[Decision, ...]) -> Decision:
    """Return the most severe of ``decisions`` (``allow`` for an empty list)."""
    return max(decisions, key=lambda d: d.severity, default=Decision.ALLOW)


class GuardrailConfig(BaseModel):
    """Policy entry common to every guardrail.

    Subclasses add a ``type: Literal["..."]`` discriminator and their own fields.

    Attributes:
        type: Which guardrail (the registry key, e.g. ``"toxicity"``).
        name: Name shown in results; defaults to ``type``. Must be unique
            within one direction of a policy.
        threshold: Score in [0, 1] at or above which the guardrail fires.
        action: What to do when it fires (``block``, ``redact``, ``flag``,
            ``allow``; some guardrails accept more, e.g. ``strip``).
        on_error: Decision when the guardrail raises or times out.
        timeout_s: Wall-clock budget for one scan, in seconds.
    """

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str | None = None
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    action: Literal["block", "redact", "flag", "allow"] = "block"
    on_error: Literal["block", "allow"] = "block"
    timeout_s: float = Field(5.0, gt=0)

    @property
    def display_name(self) -> str:
        """The entry's ``name``, or its ``type`` when no name is set."""
        return self.name or self.type


@dataclass
class GuardrailResult:
    """What one guardrail found in one text.

    Attributes:
        name: The guardrail entry's display name.
        score: Risk score in [0, 1]; higher is riskier.
        decision: The decision this guardrail asks for (``allow`` when it did
            not fire, otherwise the level its configured action maps to).
        action: The configured action that fired (e.g. ``"strip"``), or
            ``None`` when the guardrail did not fire.
        details: Guardrail-specific, JSON-serialisable findings (category
            scores, matched documents, citations, ...).
        sanitized_text: The rewritten text for ``redact``-level actions, else
            ``None``.
        error: Error message when the scan failed, else ``None``.
        latency_ms: Wall-clock time of the scan in milliseconds (set by the
            pipeline).
        overrides: Display name of an earlier guardrail whose decision this
            result replaces (a cascade's judge overrules the local classifier),
            or ``None``.
    """

    name: str
    score: float
    decision: Decision = Decision.ALLOW
    action: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    sanitized_text: str | None = None
    error: str | None = None
    latency_ms: float = 0.0
    overrides: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in the ``greenlist`` object of responses."""
        out: dict[str, Any] = {
            "name": self.name,
            "score": round(float(self.score), 6),
            "decision": self.decision.value,
            "action": self.action,
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.details:
            out["details"] = self.details
        if self.error:
            out["error"] = self.error
        if self.overrides:
            out["overrides"] = self.overrides
        return out


@dataclass
class ScanContext:
    """What the pipeline knows around the text being scanned, for guardrails that need more than the text.

    Attributes:
        messages: The conversation so far, OpenAI-style ``{"role", "content"}`` dicts (for an output
            check: every turn before the reply being checked; empty for a bare text).
        prior: Results of the guardrails that already ran on this text in this direction, by display name
            (a cascade reads the local classifier's scores from here).
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    prior: dict[str, GuardrailResult] = field(default_factory=dict)


class Guardrail(ABC):
    """Base class of every guardrail.

    Subclasses set ``Config`` to their config model and implement :meth:`scan`. Class attributes declare
    what a guardrail needs, so the gateway never has to know guardrail types by name:

    * ``streaming``: scanning partial windows of a streamed output makes sense (a citation check, for
      example, only runs on the whole text);
    * ``deobfuscate``: the guardrail matches words, so the pipeline also scans the de-obfuscated text
      (:func:`greenlist.normalize.deobfuscate`: "i d i o t", "1d10t") and keeps the more severe result;
    * ``needs_context``: the pipeline calls :meth:`scan_in_context` with the conversation and the earlier
      results instead of :meth:`scan`.

    A guardrail that can answer OpenAI's ``/v1/moderations`` also implements :class:`Moderator`.

    ``clock`` is the time source of guardrails that poll or wait (e.g. reload checks of an index on disk);
    tests set an instance's ``clock`` to a :class:`greenlist.clock.ManualClock` instead of sleeping.
    """

    clock: Clock = SYSTEM_CLOCK
    Config: ClassVar[type[GuardrailConfig]] = GuardrailConfig
    streaming: ClassVar[bool] = True
    deobfuscate: ClassVar[bool] = False
    needs_context: ClassVar[bool] = False

    def __init__(self, config: GuardrailConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """Display name of this guardrail entry."""
        return self.config.display_name

    @abstractmethod
    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Scan ``text`` coming from ``direction`` and return the finding."""

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` reports about this guardrail (e.g. a remote judge's circuit); ``{}`` when nothing."""
        return {}

    @property
    def scan_timeout_s(self) -> float:
        """Wall-clock budget of one :meth:`scan` (default: the entry's ``timeout_s``; a guardrail that makes
        several calls per scan widens it)."""
        return self.config.timeout_s

    def scan_in_context(self, text: str, direction: Direction, context: ScanContext) -> GuardrailResult:
        """Scan ``text`` knowing its conversation and the earlier results (default: :meth:`scan`).

        Called instead of :meth:`scan` when the class sets ``needs_context = True``.
        """
        return self.scan(text, direction)

    def fired(
        self, score: float, details: dict[str, Any] | None = None, sanitized_text: str | None = None
    ) -> GuardrailResult:
        """Build the result for ``score`` against the configured threshold.

        Args:
            score: Risk score in [0, 1].
            details: Guardrail-specific findings to attach.
            sanitized_text: Rewritten text, used only when the action is
                ``redact``-level.

        Returns:
            A result whose decision is the configured action when
            ``score >= threshold`` and ``allow`` otherwise.
        """
        hit = score >= self.config.threshold
        action = self.config.action if hit else None
        decision = action_decision(action) if hit else Decision.ALLOW
        return GuardrailResult(
            name=self.name,
            score=score,
            decision=decision,
            action=action,
            details=details or {},
            sanitized_text=sanitized_text if decision is Decision.REDACT else None,
        )


@runtime_checkable
class Moderator(Protocol):
    """A guardrail that computes OpenAI's moderation result (``/v1/moderations``).

    Attributes:
        name: The guardrail's display name (recorded in the audit log).
        moderation_model: The ``model`` reported in the moderation response when the request names none.
    """

    name: str
    moderation_model: str

    def moderate(self, texts: str | list[str]) -> list[dict[str, Any]]:
        """One OpenAI moderation result (``flagged``, ``categories``, ``category_scores``) per text."""
        ...


# Guardrail-specific actions and the decision level each maps to.
_ACTION_DECISIONS = {
    "allow": Decision.ALLOW,
    "annotate": Decision.ALLOW,
    "flag": Decision.FLAG,
    "cite": Decision.FLAG,
    "redact": Decision.REDACT,
    "strip": Decision.REDACT,
    "disclaim": Decision.REDACT,
    "block": Decision.BLOCK,
}


def action_decision(action: str | None) -> Decision:
    """Map a configured action name to its decision level.

    Raises:
        ValueError: for an unknown action name.
    """
    if action is None:
        return Decision.ALLOW
    try:
        return _ACTION_DECISIONS[action]
    except KeyError:
        raise ValueError(f"unknown guardrail action {action!r}; use one of {sorted(_ACTION_DECISIONS)}") from None
