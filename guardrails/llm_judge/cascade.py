"""The cascade: consult the judge only when the local classifier is unsure.

The local toxicity guardrail (``cascade.after``) runs first in the same direction; its result, found in
``ScanContext.prior`` by display name, carries ``details["categories"]`` (``{category: probability}``,
``toxicity`` included; see :meth:`guardrails.toxicity.ToxicityGuardrail.scan`). When any of those scores
lies in ``[low, high]`` the judge is asked and its decision replaces the local one; otherwise the local
decision stands. A missing or failed local result sends the text to the judge (never a silent pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guardrails.base import GuardrailResult
from guardrails.llm_judge.config import CascadeConfig


@dataclass
class CascadeCall:
    """Whether to ask the judge, and why.

    Attributes:
        ask: Consult the judge.
        reason: ``in band``, ``outside band``, ``local result missing``, ``local guardrail failed`` or
            ``local result has no category scores``.
        in_band: ``{local category: score}`` of the scores inside the band.
        local: The local guardrail's result, when there is one.
    """

    ask: bool
    reason: str
    in_band: dict[str, float] = field(default_factory=dict)
    local: GuardrailResult | None = None

    def to_dict(self, cascade: CascadeConfig) -> dict[str, Any]:
        """JSON form for result details (``decided_by`` is ``judge`` when asked, else ``local``)."""
        out: dict[str, Any] = {
            "after": cascade.after,
            "band": list(cascade.band),
            "reason": self.reason,
            "decided_by": "judge" if self.ask else "local",
        }
        if self.in_band:
            out["in_band"] = {k: round(v, 6) for k, v in self.in_band.items()}
        if self.local is not None:
            out["local_decision"] = self.local.decision.value
            out["local_score"] = round(float(self.local.score), 6)
        if self.ask and self.local is not None and self.local.error is None:
            out["overrides"] = cascade.after
        return out


def consult(cascade: CascadeConfig, prior: dict[str, GuardrailResult]) -> CascadeCall:
    """Decide whether the judge is needed for this text.

    Args:
        cascade: The entry's cascade settings.
        prior: Results of the guardrails that already ran on this text, by display name.

    Returns:
        A :class:`CascadeCall`; ``ask`` is true when a considered local score is in the band, or when the
        local result is missing, failed, or has no category scores.
    """
    local = prior.get(cascade.after)
    if local is None:
        return CascadeCall(True, "local result missing")
    if local.error is not None:
        return CascadeCall(True, "local guardrail failed", local=local)
    scores = local.details.get("categories")
    if not isinstance(scores, dict) or not scores:
        return CascadeCall(True, "local result has no category scores", local=local)
    wanted = set(cascade.categories) if cascade.categories is not None else None
    low, high = cascade.band
    in_band = {
        c: float(s)
        for c, s in scores.items()
        if (wanted is None or c in wanted) and isinstance(s, (int, float)) and low <= s <= high
    }
    if in_band:
        return CascadeCall(True, "in band", in_band, local)
    return CascadeCall(False, "outside band", local=local)
