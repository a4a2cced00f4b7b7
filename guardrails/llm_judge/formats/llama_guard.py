"""Llama Guard 3 and 4 (Meta): the conversation with the MLCommons hazard taxonomy in one prompt.

Implements the prompt format of Meta's model cards (``meta-llama/Llama-Guard-3-8B``, ``Llama-Guard-3-1B``,
``Llama-Guard-4-12B``) and of ``llama_guard/prompt_format_utils.py`` in PurpleLlama: the task names the
role under judgement (``User`` for input checks, ``Agent`` for output checks, where the judge sees the user
turn and the assistant reply), lists the categories S1-S14, renders the conversation, and asks for ``safe``
or ``unsafe`` on the first line and the violated codes, comma-separated, on the second.

With ``api: completions`` (default) the prompt is rendered here and sent to ``/completions``; the server's
tokenizer adds the BOS token, so the prompt starts at the first header. With ``api: chat`` the messages go
to ``/chat/completions`` and the model's own chat template renders the same prompt (vLLM, Ollama).
"""

from __future__ import annotations

import re
from typing import Any

from guardrails.llm_judge.formats import JudgeFormat, JudgeRequest, MalformedAnswer, Unit, Verdict, answer_text
from guardrails.llm_judge.formats import transcript as render

HAZARDS: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
"""The MLCommons AI Safety hazard taxonomy as Llama Guard 3 and 4 number it (model cards)."""

# Special tokens wrapping the user turn and opening the assistant turn, per Llama Guard version.
_WRAP = {
    3: ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
    4: ("<|header_start|>user<|header_end|>\n\n", "<|eot|><|header_start|>assistant<|header_end|>\n\n"),
}

_TASK = (
    "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy "
    "with the below categories.\n\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
    "<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
)

_CODES = re.compile(r"S(?:[1-9]|1[0-4])(?:\s*,\s*S(?:[1-9]|1[0-4]))*")


def render_prompt(unit: Unit, version: int = 3) -> str:
    """The Llama Guard prompt for ``unit`` (without the BOS token the tokenizer adds).

    Args:
        unit: The conversation; its last turn is judged (``User`` if a user turn, ``Agent`` otherwise).
        version: 3 or 4 (special tokens differ; the text is the same).

    Returns:
        The prompt, ending where the model writes ``safe`` / ``unsafe``.
    """
    role = "User" if unit.judged.role == "user" else "Agent"
    categories = "\n".join(f"{code}: {name}." for code, name in HAZARDS.items())
    head, tail = _WRAP[version]
    return head + _TASK.format(role=role, categories=categories, conversation=render(unit.turns)) + tail


def parse_answer(text: str) -> Verdict:
    """Read a Llama Guard answer: ``safe``, or ``unsafe`` and a line of codes (``S1,S10``).

    Returns:
        ``Verdict(unsafe, score 1.0 / 0.0, categories=codes)``.

    Raises:
        MalformedAnswer: for anything else (another first word, unsafe without codes, unknown codes,
            extra lines).
    """
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if lines == ["safe"]:
        return Verdict(unsafe=False, score=0.0, raw=text.strip())
    if len(lines) == 2 and lines[0] == "unsafe" and _CODES.fullmatch(lines[1]):
        codes = tuple(dict.fromkeys(c.strip() for c in lines[1].split(",")))
        return Verdict(unsafe=True, score=1.0, categories=codes, raw=text.strip())
    raise MalformedAnswer(f"not a Llama Guard answer ('safe' or 'unsafe' + S1-S14 codes): {text[:200]!r}")


class LlamaGuardFormat(JudgeFormat):
    """Llama Guard 3 / 4 prompt and parser (one call per unit).

    Default mapping: S1 and S9 -> violence, S3, S4 and S12 -> sexual, S10 -> hate, S11 -> self-harm; the
    other hazards (crimes, defamation, advice, privacy, IP, elections, code abuse) count as ``other``.
    """

    name = "llama-guard"
    default_categories = {
        "S1": "violence",
        "S2": "other",
        "S3": "sexual",
        "S4": "sexual",
        "S5": "other",
        "S6": "other",
        "S7": "other",
        "S8": "other",
        "S9": "violence",
        "S10": "hate",
        "S11": "self-harm",
        "S12": "sexual",
        "S13": "other",
        "S14": "other",
    }

    def requests(self, unit: Unit) -> list[JudgeRequest]:
        """One ``/completions`` call with the rendered prompt, or one ``/chat/completions`` call (``api: chat``)."""
        common = {"model": self.config.model, "max_tokens": 20, "temperature": 0.0}
        if self.config.api == "chat":
            messages = [{"role": t.role, "content": t.content} for t in unit.turns]
            return [JudgeRequest("/chat/completions", {**common, "messages": messages})]
        prompt = render_prompt(unit, self.config.llama_guard_version)
        return [JudgeRequest("/completions", {**common, "prompt": prompt})]

    def parse(self, request: JudgeRequest, body: Any) -> Verdict:
        """Parse the generated text with :func:`parse_answer`.

        Raises:
            MalformedAnswer: see :func:`parse_answer` and :func:`~guardrails.llm_judge.formats.answer_text`.
        """
        return parse_answer(answer_text(body))

    def fingerprint(self) -> str:
        """Format, API style and version."""
        return f"{self.name}:{self.config.api}:{self.config.llama_guard_version}"
