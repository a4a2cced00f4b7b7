"""JSON verdict: a written policy in the system prompt, a JSON verdict back (gpt-oss-safeguard, any instruct model).

Follows OpenAI's gpt-oss-safeguard guide ("policy prompt" format): the policy, with its definitions,
criteria and the required output format, goes in the system message and the content to classify in the
user message; the model answers with a JSON object. Greenlist's contract is::

    {"violation": 0 | 1, "category": "<policy category>" | null, "rationale": "<one sentence>"}

parsed strictly (:func:`parse_verdict`). The output-format section below is always appended to the policy,
so a custom policy only has to define its categories.
"""

from __future__ import annotations

import json
import re
from typing import Any

from guardrails.llm_judge.formats import JudgeFormat, JudgeRequest, MalformedAnswer, Unit, Verdict, answer_text
from guardrails.llm_judge.formats import transcript as render

DEFAULT_POLICY = """# Content safety policy

Classify whether the content violates this policy.

## Definitions and categories
- hate: attacks, dehumanises or calls for exclusion of people because of a protected attribute (race,
  ethnicity, religion, nationality, disability, sex, gender identity, sexual orientation, age, caste).
- harassment: insults, threatens, bullies or degrades a specific person.
- violence: threatens, incites or glorifies physical violence, or gives instructions for weapons that kill
  many people.
- sexual: sexually explicit content, or any sexual content involving minors.
- self-harm: encourages or instructs suicide or self-harm.
- profanity: gratuitous obscene language that is not aimed at anyone.

## Not violations
Quoting, reporting or condemning such content; counter-speech; education, news, fiction that does not
instruct; medical or scientific terms; mild language in a friendly tone.
"""

OUTPUT_FORMAT = """
## Output format
Answer with one JSON object and nothing else:
{"violation": 0 or 1, "category": the violated category name or null, "rationale": "one short sentence"}
"""

_FENCE = re.compile(r"\A```(?:json)?\s*\n(.*)\n```\Z", re.DOTALL)


def parse_verdict(text: str) -> Verdict:
    """Parse a JSON verdict strictly.

    Accepted: exactly one JSON object (optionally inside one ```json fence) with ``violation`` an integer
    0 or 1 (not a boolean or a string), ``category`` a non-empty string when ``violation`` is 1 (a string
    or null otherwise), ``rationale`` a string if present. Other keys are ignored.

    Returns:
        ``Verdict(unsafe=violation == 1, score=float(violation), categories=(category,) if unsafe)``.

    Raises:
        MalformedAnswer: for anything else.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"verdict is not JSON ({exc.msg}): {text[:200]!r}") from None
    if not isinstance(obj, dict):
        raise MalformedAnswer(f"verdict is not a JSON object: {text[:200]!r}")
    violation = obj.get("violation")
    if type(violation) is not int or violation not in (0, 1):
        raise MalformedAnswer(f"verdict 'violation' must be the integer 0 or 1, got {violation!r}")
    category = obj.get("category")
    if violation == 1 and (not isinstance(category, str) or not category.strip()):
        raise MalformedAnswer(f"verdict with violation 1 needs a category string, got {category!r}")
    if category is not None and not isinstance(category, str):
        raise MalformedAnswer(f"verdict 'category' must be a string or null, got {category!r}")
    rationale = obj.get("rationale")
    if rationale is not None and not isinstance(rationale, str):
        raise MalformedAnswer(f"verdict 'rationale' must be a string, got {rationale!r}")
    cats = (category.strip(),) if violation == 1 and isinstance(category, str) else ()
    return Verdict(
        unsafe=violation == 1, score=float(violation), categories=cats, rationale=rationale, raw=text.strip()
    )


def render_content(unit: Unit) -> str:
    """The user message: the judged text, after the context turns for output checks or multi-turn units."""
    if len(unit.turns) == 1:
        return unit.judged.content
    who = "assistant reply" if unit.judged.role == "assistant" else "user message"
    context = render(unit.turns[:-1], user="User", assistant="Assistant")
    return f"Conversation so far:\n{context}\n\nClassify ONLY this {who}:\n{unit.judged.content}"


class JsonVerdictFormat(JudgeFormat):
    """Policy-prompt format with a strict JSON verdict (``format: gpt-oss-safeguard``).

    Default mapping: the six Greenlist category names map to themselves; any other category the policy
    defines counts as ``other`` unless the entry's ``categories`` maps it.

    Raises:
        OSError: when ``policy_file`` cannot be read (at construction).
    """

    name = "gpt-oss-safeguard"
    default_categories = {c: c for c in ("hate", "harassment", "violence", "sexual", "self-harm", "profanity")}

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.system_prompt = (config.policy_text() or DEFAULT_POLICY).rstrip() + "\n" + OUTPUT_FORMAT

    def requests(self, unit: Unit) -> list[JudgeRequest]:
        """One ``/chat/completions`` call: the policy as system message, the content as user message."""
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": render_content(unit)},
        ]
        return [
            JudgeRequest(
                "/chat/completions",
                {"model": self.config.model, "messages": messages, "temperature": 0.0, "max_tokens": 512},
            )
        ]

    def parse(self, request: JudgeRequest, body: Any) -> Verdict:
        """Parse ``choices[0].message.content`` with :func:`parse_verdict`.

        Raises:
            MalformedAnswer: see :func:`parse_verdict`.
        """
        return parse_verdict(answer_text(body))

    def fingerprint(self) -> str:
        """Format and a hash of the system prompt (a policy edit invalidates cached verdicts)."""
        import hashlib

        return f"{self.name}:{hashlib.sha256(self.system_prompt.encode()).hexdigest()[:16]}"
