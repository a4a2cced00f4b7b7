"""The Anthropic Messages API (``/v1/messages``) translated to the chat-completions flow and back.

A request becomes a chat completion (:func:`to_chat`): ``system`` a system message, ``text`` blocks text,
assistant ``tool_use`` blocks ``tool_calls``, user ``tool_result`` blocks ``tool`` messages, ``tools``
(``input_schema``) function tools, ``tool_choice`` (``auto``/``any``/``tool``/``none``) its chat form,
``stop_sequences`` ``stop``. It runs through :func:`gateway.serving.completions.serve` (guardrails, watermark,
``greenlist``) and comes back as a Message (:func:`to_message`: ``text`` and ``tool_use`` blocks, ``stop_reason``)
or as the Messages streaming events (:func:`stream_events`: ``message_start``, ``content_block_start``,
``content_block_delta`` with ``text_delta`` / ``input_json_delta``, ``content_block_stop``, ``message_delta``,
``message_stop``). Blocks and fields the translation cannot carry are refused by name (HTTP 400).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from gateway.api.schemas import ChatCompletionRequest, MessagesRequest
from gateway.backends.fields import reject_unsupported
from gateway.errors import APIError
from gateway.serving.chunks import ChatOutcome, chat_request, read_chunks
from gateway.serving.completions import ChatStream

_TRANSLATED = {
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "metadata",
    "greenlist",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def _unsupported(message: str, param: str) -> APIError:
    return APIError(400, message, param=param, code="unsupported_parameter")


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _text_of(content: Any, param: str) -> str:
    parts = []
    for j, block in enumerate(_blocks(content)):
        if block.get("type") != "text":
            raise _unsupported(f"content block type {block.get('type')!r} is not supported here", f"{param}[{j}].type")
        parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def _message(i: int, message: dict[str, Any]) -> list[dict[str, Any]]:
    role, param = message.get("role"), f"messages[{i}].content"
    if role not in ("user", "assistant"):
        raise _unsupported(f"role {role!r} is not supported (user or assistant)", f"messages[{i}].role")
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(message.get("content"))):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use" and role == "assistant":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input") or {})},
                }
            )
        elif kind == "tool_result" and role == "user":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id"),
                    "content": _text_of(block.get("content"), f"{param}[{j}].content"),
                }
            )
        else:
            raise _unsupported(f"content block type {kind!r} is not supported in a {role} turn", f"{param}[{j}].type")
    if texts or calls:
        turn: dict[str, Any] = {"role": role, "content": "\n".join(texts) if texts else None}
        if calls:
            turn["tool_calls"] = calls
        out.append(turn)
    return out


def _tool_choice(choice: dict[str, Any]) -> str | dict[str, Any]:
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind), "auto")


def to_chat(body: MessagesRequest, raw: dict[str, Any]) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """Translate a Messages request into a chat completion request ``(validated body, raw body)``.

    Raises:
        APIError: 400 naming a block, role or field that cannot be carried.
    """
    reject_unsupported({k: v for k, v in raw.items() if k not in _TRANSLATED}, ())
    messages = [{"role": "system", "content": _text_of(body.system, "system")}] if body.system else []
    for i, message in enumerate(body.messages):
        messages.extend(_message(i, message.model_dump()))
    chat: dict[str, Any] = {
        "model": body.model,
        "messages": messages,
        "max_tokens": body.max_tokens,
        "stream": bool(body.stream),
    }
    for name in ("temperature", "top_p"):
        if raw.get(name) is not None:
            chat[name] = raw[name]
    if body.stop_sequences:
        chat["stop"] = body.stop_sequences
    if body.tools:
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema"),
                },
            }
            for t in body.tools
        ]
    if body.tool_choice:
        chat["tool_choice"] = _tool_choice(body.tool_choice)
    request = chat_request(chat, raw, "messages")
    return request, chat


def _arguments(call: dict[str, Any]) -> Any:
    try:
        return json.loads(call["function"]["arguments"] or "{}")
    except ValueError:
        return {"_raw": call["function"]["arguments"]}


def to_message(body: MessagesRequest, outcome: ChatOutcome, message_id: str) -> dict[str, Any]:
    """The Message object of a finished chat outcome."""
    content: list[dict[str, Any]] = [{"type": "text", "text": outcome.text}] if outcome.text else []
    content += [
        {"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": _arguments(c)}
        for c in outcome.tool_calls
    ]
    usage = outcome.usage or {}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body.model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(outcome.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)},
        "greenlist": outcome.greenlist,
    }


async def stream_events(body: MessagesRequest, result: ChatStream, message_id: str) -> AsyncIterator[str]:
    """Render a chat stream as Messages API server-sent events."""

    def event(kind: str, **data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    start: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield event("message_start", message=start)
    outcome = ChatOutcome()
    block = -1
    text_open = False
    async for kind, data in read_chunks(result.chunks, outcome):
        if kind == "error":
            yield event("error", error={"type": "api_error", "message": data.get("message")})
            return
        if kind == "text" and not text_open:
            if block >= 0:
                yield event("content_block_stop", index=block)
            block, text_open = block + 1, True
            yield event("content_block_start", index=block, content_block={"type": "text", "text": ""})
        if kind == "text":
            yield event("content_block_delta", index=block, delta={"type": "text_delta", "text": data})
        elif kind == "tool":
            if block >= 0:
                yield event("content_block_stop", index=block)
            block, text_open = block + 1, False
            _, call_id, name = data
            yield event(
                "content_block_start",
                index=block,
                content_block={"type": "tool_use", "id": call_id, "name": name, "input": {}},
            )
        elif kind == "arguments":
            yield event("content_block_delta", index=block, delta={"type": "input_json_delta", "partial_json": data[1]})
    if block >= 0:
        yield event("content_block_stop", index=block)
    final = to_message(body, outcome, message_id)
    yield event(
        "message_delta",
        delta={"stop_reason": final["stop_reason"], "stop_sequence": None},
        usage={"output_tokens": final["usage"]["output_tokens"]},
        greenlist=outcome.greenlist,
    )
    yield event("message_stop")


def new_id() -> str:
    """A Message id."""
    return "msg_" + uuid.uuid4().hex
