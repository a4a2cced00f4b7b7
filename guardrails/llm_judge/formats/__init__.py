"""Judge formats: how to ask a safety model about one conversation turn and how to read its answer.

One module per format, each implementing :class:`JudgeFormat`:

* :mod:`.llama_guard`: Meta Llama Guard 3 / 4 (MLCommons hazards S1-S14, answer ``safe`` / ``unsafe\\nS1,S10``);
* :mod:`.shieldgemma`: Google ShieldGemma (one harm policy per call, answer ``Yes`` / ``No``, score from logprobs);
* :mod:`.json_verdict`: OpenAI gpt-oss-safeguard or any instruction model given a written policy, answer
  ``{"violation": 0|1, "category": ..., "rationale": ...}``;
* :mod:`.openai_moderation`: OpenAI's ``/v1/moderations`` response.

Parsers are strict: an answer that does not follow the format raises :class:`MalformedAnswer`, which the
guardrail turns into an error (``on_error``), never into a pass.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from guardrails.llm_judge.config import LLMJudgeConfig

Role = Literal["user", "assistant"]


class MalformedAnswer(ValueError):
    """The judge answered, but not in its format (the answer is an error, never a pass)."""


@dataclass(frozen=True)
class Turn:
    """One conversation message: ``role`` (``user`` or ``assistant``) and its text."""

    role: Role
    content: str


@dataclass(frozen=True)
class Unit:
    """One thing the judge is asked about: the last of ``turns``, with the earlier ones as context.

    Attributes:
        turns: Non-empty; ``turns[-1]`` is judged (a user turn for input checks, the assistant reply for
            output checks).
    """

    turns: tuple[Turn, ...]

    @property
    def judged(self) -> Turn:
        """The turn under judgement (the last one)."""
        return self.turns[-1]

    def digest(self) -> str:
        """SHA-256 hex digest of the turns (roles and texts), the text part of the cache key."""
        payload = json.dumps([[t.role, t.content] for t in self.turns], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JudgeRequest:
    """One HTTP call to the judge.

    Attributes:
        path: Path below ``base_url`` (``/completions``, ``/chat/completions``, ``/moderations``).
        body: JSON request body.
        label: What this call asks about when a unit needs several (a ShieldGemma harm type), else ``""``.
    """

    path: str
    body: dict[str, Any]
    label: str = ""


@dataclass
class Verdict:
    """The judge's answer about one unit.

    Attributes:
        unsafe: The judge says the judged turn violates the policy.
        score: Violation probability in [0, 1] (1.0 / 0.0 for formats without probabilities).
        categories: Judge category codes the answer names (``S1``, ``hate``, ``harassment/threatening``).
        category_scores: ``{judge category: score}`` where the format gives per-category scores.
        rationale: The judge's explanation, when the format has one.
        raw: The answer text (at most 300 characters) for the audit record.
    """

    unsafe: bool
    score: float
    categories: tuple[str, ...] = ()
    category_scores: dict[str, float] = field(default_factory=dict)
    rationale: str | None = None
    raw: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form for result details."""
        out: dict[str, Any] = {
            "unsafe": self.unsafe,
            "score": round(self.score, 6),
            "categories": list(self.categories),
        }
        if self.category_scores:
            out["category_scores"] = {k: round(v, 6) for k, v in self.category_scores.items()}
        if self.rationale:
            out["rationale"] = self.rationale[:300]
        if self.raw:
            out["raw"] = self.raw[:300]
        return out


class JudgeFormat(ABC):
    """A judge format: requests for a unit, a strict parser, and a default category mapping.

    Args:
        config: The guardrail entry (model name, API style, format options).
    """

    name: ClassVar[str]
    default_categories: ClassVar[dict[str, str | None]]

    def __init__(self, config: LLMJudgeConfig) -> None:
        self.config = config

    @abstractmethod
    def requests(self, unit: Unit) -> list[JudgeRequest]:
        """The HTTP calls that judge ``unit`` (one for most formats, one per harm type for ShieldGemma)."""

    @abstractmethod
    def parse(self, request: JudgeRequest, body: Any) -> Verdict:
        """Read the judge's JSON response ``body`` to ``request``.

        Raises:
            MalformedAnswer: when the response does not follow the format.
        """

    def fingerprint(self) -> str:
        """What, besides the text, decides the answer (prompt options); part of the cache key."""
        return self.name

    def combine(self, verdicts: list[Verdict]) -> Verdict:
        """One verdict from the answers of several calls about one unit (any unsafe; max score; union).

        Raises:
            ValueError: for an empty list.
        """
        if not verdicts:
            raise ValueError("no verdicts to combine")
        if len(verdicts) == 1:
            return verdicts[0]
        cats: list[str] = []
        scores: dict[str, float] = {}
        for v in verdicts:
            cats += [c for c in v.categories if c not in cats]
            scores.update(v.category_scores)
        return Verdict(
            unsafe=any(v.unsafe for v in verdicts),
            score=max(v.score for v in verdicts),
            categories=tuple(cats),
            category_scores=scores,
            rationale="; ".join(v.rationale for v in verdicts if v.rationale) or None,
            raw=" | ".join(v.raw for v in verdicts)[:300],
        )


def first_choice(body: Any) -> dict[str, Any]:
    """``body["choices"][0]`` of an OpenAI completions / chat completions response.

    Raises:
        MalformedAnswer: when the response has no such choice object.
    """
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise MalformedAnswer(f"response has no choices: {str(body)[:200]!r}")
    choice = body["choices"][0]
    if not isinstance(choice, dict):
        raise MalformedAnswer(f"choices[0] is not an object: {str(choice)[:200]!r}")
    return choice


def answer_text(body: Any) -> str:
    """The generated text of a completions (``choices[0].text``) or chat (``choices[0].message.content``) response.

    Raises:
        MalformedAnswer: when neither is a string.
    """
    choice = first_choice(body)
    text = choice.get("text")
    if text is None and isinstance(choice.get("message"), dict):
        text = choice["message"].get("content")
    if not isinstance(text, str):
        raise MalformedAnswer(f"choices[0] has no text or message.content: {str(choice)[:200]!r}")
    return text


def transcript(turns: tuple[Turn, ...], user: str = "User", assistant: str = "Agent") -> str:
    """Turns rendered ``"User: ...\\n\\nAgent: ..."`` (Llama Guard's conversation block)."""
    return "\n\n".join(f"{user if t.role == 'user' else assistant}: {t.content}" for t in turns)


def get_format(config: LLMJudgeConfig) -> JudgeFormat:
    """The :class:`JudgeFormat` for ``config.format``.

    Raises:
        ValueError: for an unknown format name (the config's ``Literal`` normally prevents it).
    """
    from guardrails.llm_judge.formats.json_verdict import JsonVerdictFormat
    from guardrails.llm_judge.formats.llama_guard import LlamaGuardFormat
    from guardrails.llm_judge.formats.openai_moderation import OpenAIModerationFormat
    from guardrails.llm_judge.formats.shieldgemma import ShieldGemmaFormat

    formats: dict[str, type[JudgeFormat]] = {
        f.name: f for f in (LlamaGuardFormat, ShieldGemmaFormat, JsonVerdictFormat, OpenAIModerationFormat)
    }
    try:
        return formats[config.format](config)
    except KeyError:
        raise ValueError(f"unknown judge format {config.format!r}; use one of {sorted(formats)}") from None


__all__ = [
    "JudgeFormat",
    "JudgeRequest",
    "MalformedAnswer",
    "Turn",
    "Unit",
    "Verdict",
    "answer_text",
    "first_choice",
    "get_format",
    "transcript",
]
