"""Tool calling on the local backend, through the model's own chat template.

A model whose chat template renders ``tools`` (transformers ``apply_chat_template(tools=...)``) gets the request's
function tools and its tool turns (assistant ``tool_calls``, ``tool`` results) in the template's own form; its
answer is parsed back into OpenAI's ``tool_calls``. The call syntax parsed is the one of the Hermes / Qwen2.5 /
SmolLM3 templates::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

With ``tool_choice: "required"`` or a named function the whole answer is constrained (llguidance, see
:mod:`gateway.backends.constrained`) to one such call whose ``arguments`` validate against that tool's
``parameters`` schema; with ``auto`` the model answers freely and well-formed calls are parsed out of its text.
A model whose template has no tool support is refused with a 400 naming ``tools`` (the embedded SmolLM2-135M).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from gateway.backends.constrained import JSON_LAYOUT, invalid_value

OPEN, CLOSE = "<tool_call>", "</tool_call>"
TOOL_FIELDS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})
_CALL = re.compile(re.escape(OPEN) + r"\s*(\{.*?\})\s*(?:" + re.escape(CLOSE) + r"|$)", re.S)


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a ``tools`` variable (and so can offer tools to the model)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return isinstance(template, str) and "tools" in template


def requested_tools(raw: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The request's function tools and its ``tool_choice``, checked.

    Args:
        raw: The chat request body.

    Returns:
        ``(tools, choice)``: the ``function`` objects (``{"name", "description", "parameters"}``) and
        ``"auto"``, ``"required"``, ``"none"`` or the named function's name; ``([], "none")`` without tools.

    Raises:
        APIError: 400 ``invalid_value`` naming ``tools[i]...`` or ``tool_choice``.
    """
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(raw.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise invalid_value("each tool must be {'type': 'function', 'function': {...}}", f"tools[{i}]")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise invalid_value("a function tool needs a 'name'", f"tools[{i}].function.name")
        if not isinstance(function.get("parameters", {}), dict):
            raise invalid_value("'parameters' must be a JSON Schema object", f"tools[{i}].function.parameters")
        tools.append(function)
    choice = raw.get("tool_choice")
    if not tools:
        return [], "none"
    if choice is None:
        return tools, "auto"
    if choice in ("auto", "required", "none"):
        return tools, choice
    name = ((choice or {}).get("function") or {}).get("name") if isinstance(choice, dict) else None
    if name not in {t["name"] for t in tools}:
        raise invalid_value(
            "'tool_choice' must be 'auto', 'required', 'none' or {'type': 'function', 'function': {'name': ...}} "
            "naming one of the tools",
            "tool_choice",
        )
    return tools, name


def call_grammar(tools: list[dict[str, Any]], choice: str) -> str:
    """The llguidance grammar of one tool call of ``tools`` (only ``choice`` when it names one).

    Returns:
        A Lark grammar: ``<tool_call>``, a newline, ``{"name": ..., "arguments": ...}`` whose arguments validate
        against the tool's ``parameters``, a newline, ``</tool_call>``.
    """
    import llguidance

    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["name"]},
                "arguments": t.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
        if choice in ("auto", "required") or t["name"] == choice
    ]
    schema = {"x-guidance": JSON_LAYOUT, "anyOf": options}
    lark = f"start: {json.dumps(OPEN + chr(10))} call {json.dumps(chr(10) + CLOSE)}\ncall: %json {json.dumps(schema)}"
    return str(llguidance.LLMatcher.grammar_from_lark(lark))


def template_messages(messages: list[dict[str, Any]], text: Any) -> list[dict[str, Any]]:
    """Chat messages in the form chat templates expect: text content, assistant ``tool_calls`` with their
    ``arguments`` as objects, ``tool`` turns with ``tool_call_id`` (and ``name`` when given).

    Args:
        messages: OpenAI chat messages.
        text: ``message -> str`` (the text of a message's content).
    """
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m["role"], "content": text(m)}
        if m.get("tool_calls"):
            item["tool_calls"] = [
                {
                    "type": "function",
                    "id": c.get("id"),
                    "function": {"name": c["function"]["name"], "arguments": _arguments(c["function"]["arguments"])},
                }
                for c in m["tool_calls"]
            ]
        for key in ("tool_call_id", "name"):
            if m.get(key):
                item[key] = m[key]
        out.append(item)
    return out


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]] | None]:
    """Split a model's answer into its text and its tool calls (OpenAI's shape).

    Args:
        text: The generated text.

    Returns:
        ``(text without the calls, calls)``; each call ``{"id", "type": "function", "function": {"name",
        "arguments"}}`` with ``arguments`` a JSON string. A block that is not ``{"name": str, "arguments": ...}``
        JSON stays in the text; ``calls`` is None when there is none.
    """
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in _CALL.finditer(text):
        try:
            body = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            continue
        arguments = body.get("arguments", body.get("parameters", {}))
        calls.append(
            {
                "id": "call_" + uuid.uuid4().hex[:24],
                "type": "function",
                "function": {"name": body["name"], "arguments": json.dumps(arguments)},
            }
        )
        kept.append(text[last : match.start()])
        last = match.end()
    kept.append(text[last:])
    return ("".join(kept).strip() if calls else text), calls or None
