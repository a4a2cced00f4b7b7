"""OpenAI moderation: ``POST /v1/moderations`` on any OpenAI-compatible service (OpenAI, a Greenlist gateway).

Request ``{"model": ..., "input": text}``; response ``{"id", "model", "results": [{"flagged": bool,
"categories": {name: bool}, "category_scores": {name: float}}]}`` (OpenAI API reference, Moderations).
Only the judged turn is sent (the endpoint has no notion of a conversation).
"""

from __future__ import annotations

import math
from typing import Any

from guardrails.llm_judge.formats import JudgeFormat, JudgeRequest, MalformedAnswer, Unit, Verdict


def parse_moderation(body: Any) -> Verdict:
    """Parse a moderation response with exactly one result.

    Returns:
        ``Verdict(unsafe=flagged, score=max category score, categories=names flagged true,
        category_scores)``. Counting only mapped categories is the guardrail's job.

    Raises:
        MalformedAnswer: no single result, ``flagged`` not a boolean, ``categories`` not ``{str: bool}``,
            ``category_scores`` not ``{str: number in [0, 1]}``.
    """
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
        raise MalformedAnswer(f"moderation response needs exactly one result: {str(body)[:200]!r}")
    res = results[0]
    flagged, cats, scores = res.get("flagged"), res.get("categories"), res.get("category_scores")
    if not isinstance(flagged, bool):
        raise MalformedAnswer(f"moderation 'flagged' must be a boolean, got {flagged!r}")
    if not isinstance(cats, dict) or not all(isinstance(v, bool) for v in cats.values()):
        raise MalformedAnswer(f"moderation 'categories' must map names to booleans: {str(cats)[:200]!r}")
    if not isinstance(scores, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0
        for v in scores.values()
    ):
        raise MalformedAnswer(
            f"moderation 'category_scores' must map names to numbers in [0, 1]: {str(scores)[:200]!r}"
        )
    hit = tuple(name for name, on in cats.items() if on)
    float_scores = {str(k): float(v) for k, v in scores.items()}
    return Verdict(
        unsafe=bool(hit) or flagged,
        score=max(float_scores.values(), default=0.0),
        categories=hit,
        category_scores=float_scores,
        raw=f"flagged={flagged} categories={list(hit)}",
    )


class OpenAIModerationFormat(JudgeFormat):
    """``/moderations`` request and strict response parser.

    Default mapping: ``hate*`` -> hate, ``harassment*`` -> harassment, ``self-harm*`` -> self-harm,
    ``sexual*`` -> sexual, ``violence*`` -> violence, ``illicit*`` -> other, Greenlist's ``profanity`` ->
    profanity and its overall ``toxicity`` -> ignored (it duplicates the others).
    """

    name = "openai-moderation"
    default_categories = {
        "hate": "hate",
        "hate/threatening": "hate",
        "harassment": "harassment",
        "harassment/threatening": "harassment",
        "self-harm": "self-harm",
        "self-harm/intent": "self-harm",
        "self-harm/instructions": "self-harm",
        "sexual": "sexual",
        "sexual/minors": "sexual",
        "violence": "violence",
        "violence/graphic": "violence",
        "illicit": "other",
        "illicit/violent": "other",
        "profanity": "profanity",
        "toxicity": None,
    }

    def requests(self, unit: Unit) -> list[JudgeRequest]:
        """One ``/moderations`` call with the judged turn's text."""
        return [JudgeRequest("/moderations", {"model": self.config.model, "input": unit.judged.content})]

    def parse(self, request: JudgeRequest, body: Any) -> Verdict:
        """Parse with :func:`parse_moderation`.

        Raises:
            MalformedAnswer: see :func:`parse_moderation`.
        """
        return parse_moderation(body)
