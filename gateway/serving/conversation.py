"""Guarding agent traffic: the input guardrails read each chat turn on its own, the output guardrails read
tool-call arguments.

* :func:`check_messages` runs the input guardrails on every message whose role the policy lists
  (``input.roles``; default ``user`` and ``tool``), each message on its own and cached by content hash
  (:meth:`gateway.serving.pipeline.Pipeline.check_cached`), so an agent conversation re-sent with one new turn
  costs one scan. A ``redact`` decision rewrites the message the model receives.
* :func:`check_tool_calls` runs the output guardrails on the string values of each tool call's JSON arguments,
  so a model cannot carry blocked text out through a tool call.

Both return a :class:`~gateway.serving.pipeline.Verdict` whose ``items`` name each checked message
(``index``, ``role``) or tool call (``index``, ``id``, ``name``) for the ``greenlist`` object.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.serving.pipeline import Pipeline, Verdict
from guardrails import Decision, Direction, most_severe

_ROLE_ALIASES = {"developer": "system", "function": "tool"}


def content_text(message: dict[str, Any]) -> str:
    """A message's text: its string ``content``, or its text parts joined by newlines."""
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def _arguments_text(arguments: str) -> str:
    """The string values of a tool call's JSON arguments, one per line (the raw text when it is not JSON)."""
    try:
        value = json.loads(arguments)
    except (ValueError, TypeError):
        return arguments
    leaves: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            leaves.append(node)
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(value)
    return "\n".join(leaves)


def _message_text(message: dict[str, Any]) -> str:
    parts = [content_text(message)]
    for call in message.get("tool_calls") or []:
        parts.append(_arguments_text(str((call.get("function") or {}).get("arguments") or "")))
    return "\n".join(p for p in parts if p)


def _record(verdict: Verdict, cached: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "decision": verdict.decision.value,
        "guardrails": [
            {"name": r.name, "score": round(r.score, 6), "decision": r.decision.value} for r in verdict.results
        ],
    }
    if cached is not None:
        out["cached"] = cached
    return out


def _aggregate(
    direction: Direction,
    checked: list[Verdict],
    text: str,
    scope: dict[str, Any],
    items: dict[str, list[dict[str, Any]]],
) -> Verdict:
    """One verdict for several checked texts: the most severe decision, the results of the (last) worst text."""
    worst = max(reversed(checked), key=lambda v: v.decision.severity, default=None)
    return Verdict(
        direction, most_severe([v.decision for v in checked]), text, list(worst.results) if worst else [], scope, items
    )


async def check_messages(pipeline: Pipeline, messages: list[dict[str, Any]]) -> tuple[Verdict, list[dict[str, Any]]]:
    """Run the input guardrails on the messages whose role the policy checks.

    Args:
        pipeline: The request's compiled policy.
        messages: The chat messages as the client sent them (a text completion: one user message).

    Returns:
        ``(verdict, messages to send)``: the aggregate verdict (``items["messages"]`` lists each checked message
        with ``index``, ``role``, ``decision``, ``cached`` and scores) and the messages with any redaction applied.
    """
    roles = {_ROLE_ALIASES.get(r, r) for r in pipeline.policy.input_roles}
    forwarded = [dict(m) for m in messages]
    checked: list[Verdict] = []
    records: list[dict[str, Any]] = []
    texts: list[str] = []
    hits = 0
    for index, message in enumerate(messages):
        role = str(message.get("role"))
        text = _message_text(message)
        if _ROLE_ALIASES.get(role, role) not in roles or not text:
            continue
        verdict, cached = await pipeline.check_cached(text, Direction.INPUT, messages=messages[:index])
        hits += cached
        checked.append(verdict)
        records.append({"index": index, "role": role, **_record(verdict, cached)})
        texts.append(verdict.text)
        if verdict.decision is Decision.REDACT and verdict.text != text and not message.get("tool_calls"):
            forwarded[index]["content"] = verdict.text
    scope = {"kind": "messages", "checked": len(checked), "cached": hits, "chars": sum(map(len, texts))}
    return _aggregate(Direction.INPUT, checked, "\n".join(texts), scope, {"messages": records}), forwarded


async def check_tool_calls(
    pipeline: Pipeline, calls: list[dict[str, Any]], text_verdict: Verdict, messages: list[dict[str, Any]]
) -> tuple[Verdict, list[dict[str, Any]]]:
    """Run the output guardrails on each tool call's arguments and merge the result with the text's verdict.

    A ``redact`` decision on a call is applied to its argument values (each string value redacted on its own);
    arguments that are not JSON cannot be redacted and are blocked instead.

    Args:
        pipeline: The request's compiled policy.
        calls: The generated tool calls, OpenAI's shape.
        text_verdict: The verdict on the generated text.
        messages: The conversation before the reply (context for guardrails that read it).

    Returns:
        ``(verdict, calls to send)``: the merged verdict (``items["tool_calls"]`` names each call) and the calls
        with any redaction applied.
    """
    out: list[dict[str, Any]] = []
    verdicts: list[Verdict] = []
    records: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        function = dict(call.get("function") or {})
        arguments = str(function.get("arguments") or "")
        verdict = await pipeline.check(_arguments_text(arguments), Direction.OUTPUT, messages=messages)
        if verdict.decision is Decision.REDACT:
            redacted = await _redact_arguments(pipeline, arguments)
            if redacted is None:
                verdict.decision = Decision.BLOCK
            else:
                function["arguments"] = redacted
        verdicts.append(verdict)
        records.append({"index": index, "id": call.get("id"), "name": function.get("name"), **_record(verdict)})
        out.append({**call, "function": function})
    decision = most_severe([text_verdict.decision] + [v.decision for v in verdicts])
    merged = Verdict(
        Direction.OUTPUT,
        decision,
        text_verdict.text,
        text_verdict.results,
        text_verdict.scope,
        {**text_verdict.items, "tool_calls": records},
    )
    return merged, out


async def _redact_arguments(pipeline: Pipeline, arguments: str) -> str | None:
    try:
        value = json.loads(arguments)
    except (ValueError, TypeError):
        return None

    async def walk(node: Any) -> Any:
        if isinstance(node, str):
            return (await pipeline.check(node, Direction.OUTPUT)).text
        if isinstance(node, dict):
            return {k: await walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [await walk(v) for v in node]
        return node

    return json.dumps(await walk(value))
