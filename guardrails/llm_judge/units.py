"""What the judge is asked about: conversation turns cut into cacheable units, and completed sentences.

Input checks judge every user turn of the conversation, each with up to ``context_turns`` earlier messages
(Llama Guard judges "ONLY THE LAST User message" of what it is shown). A unit's text never changes once
the turn exists, so in a growing conversation all earlier units are cache hits and only the new turn is
sent to the judge. Output checks judge the assistant reply with the turns before it (at least the last
user turn, as Llama Guard's response classification expects).
"""

from __future__ import annotations

from typing import Any

from guardrails.base import Direction
from guardrails.llm_judge.formats import Role, Turn, Unit


def message_text(message: dict[str, Any]) -> str:
    """The text of an OpenAI-style message: ``content`` as a string, or its ``text`` parts joined by newlines."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def conversation(messages: list[dict[str, Any]]) -> list[Turn]:
    """``user`` and ``assistant`` messages as :class:`Turn` objects (system, tool and empty messages dropped)."""
    turns = []
    for m in messages:
        role = m.get("role")
        text = message_text(m)
        if role in ("user", "assistant") and text.strip():
            r: Role = "user" if role == "user" else "assistant"
            turns.append(Turn(r, text))
    return turns


def build_units(text: str, direction: Direction, messages: list[dict[str, Any]], context_turns: int) -> list[Unit]:
    """The units to judge for one scan.

    Args:
        text: The text the pipeline scans (input: the user-side messages joined; output: the reply).
        direction: ``input`` or ``output``.
        messages: The conversation (``ScanContext.messages``); for output checks, the turns before the reply.
        context_turns: Earlier messages shown with each judged turn (>= 0).

    Returns:
        Input: one unit per user turn of ``messages`` (one unit with ``text`` when there is none).
        Output: one unit, the reply after its context (always including the last user turn, if any).
    """
    turns = conversation(messages)
    if direction is Direction.INPUT:
        units = [Unit(tuple(turns[max(0, i - context_turns) : i + 1])) for i, t in enumerate(turns) if t.role == "user"]
        return units or [Unit((Turn("user", text),))]
    last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
    start = len(turns) - context_turns
    if last_user is not None:
        start = min(start, last_user)
    return [Unit(tuple(turns[max(0, start) :]) + (Turn("assistant", text),))]
