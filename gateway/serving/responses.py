"""The OpenAI Responses API (``/v1/responses``) translated to the chat-completions flow and back.

A request becomes a chat completion (:func:`to_chat`): ``instructions`` a system message first,
``input`` (a string or a list of items: messages, ``function_call`` and ``function_call_output`` items) chat
messages after the stored conversation of ``previous_response_id``, function ``tools`` and ``tool_choice`` the
chat shapes, ``text.format`` the ``response_format``, ``max_output_tokens`` ``max_tokens``. It then runs through
:func:`gateway.serving.completions.serve` (guardrails, watermark, the ``greenlist`` record) and the answer comes
back as a Response object (:func:`to_response`) or as the documented stream events (:func:`stream_events`:
``response.created``, ``response.output_item.added``, ``response.output_text.delta``,
``response.function_call_arguments.delta``, ..., ``response.completed``). Fields the translation cannot carry
are refused by name (HTTP 400), never dropped.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from gateway.api.schemas import ChatCompletionRequest, ResponsesRequest
from gateway.backends.fields import reject_unsupported
from gateway.errors import APIError
from gateway.serving.chunks import ChatOutcome, chat_request, read_chunks
from gateway.serving.completions import ChatStream
from gateway.serving.response_store import ResponseStore

# Responses fields translated here or owned by the gateway; the rest of PASSED is forwarded to the chat request.
_TRANSLATED = {
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "previous_response_id",
    "store",
    "stream",
    "max_output_tokens",
    "metadata",
    "text",
    "greenlist",
    "include",
    "truncation",
    "reasoning",
}
_PASSED = {
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "top_logprobs",
}


def _param_error(message: str, param: str) -> APIError:
    return APIError(400, message, param=param, code="unsupported_parameter")


def _content_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for i, part in enumerate(content or []):
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise _param_error(f"content part type {kind!r} is not supported (text only)", f"{param}.content[{i}]")
        parts.append(str(part.get("text", "")))
    return "\n".join(parts)


def input_messages(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages of a Responses ``input`` (a string is one user message).

    Raises:
        APIError: 400 naming the item whose type cannot be carried (e.g. ``input[2].type``).
    """
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") in ("user", "system", "developer", "assistant"):
            messages.append({"role": item["role"], "content": _content_text(item.get("content"), f"input[{i}]")})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
            }
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls") is not None:
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else json.dumps(output),
                }
            )
        else:
            raise _param_error(f"input item type {kind!r} is not supported by this gateway", f"input[{i}].type")
    return messages


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _param_error(
                f"tool type {tool.get('type')!r} is not supported (function tools only)", f"tools[{i}].type"
            )
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        out.append({"type": "function", "function": function})
    return out


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    fmt = text.get("format") or {"type": "text"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return None if fmt.get("type") == "text" else {"type": fmt.get("type")}


def to_chat(
    body: ResponsesRequest, raw: dict[str, Any], store: ResponseStore
) -> tuple[ChatCompletionRequest, dict[str, Any], list[dict[str, Any]]]:
    """Translate a Responses request into a chat completion request.

    Returns:
        ``(chat body, chat raw body, conversation)``; the conversation (stored conversation of
        ``previous_response_id`` plus this input, without ``instructions``) is what :meth:`ResponseStore.save` keeps.

    Raises:
        APIError: 400 for a field or item that cannot be carried, 404 for an unknown ``previous_response_id``.
    """
    reject_unsupported({k: v for k, v in raw.items() if k not in _TRANSLATED}, _PASSED)
    if raw.get("include"):
        raise _param_error("include is not supported by this gateway", "include")
    history = (
        store.load(body.previous_response_id, "previous_response_id")["messages"] if body.previous_response_id else []
    )
    conversation = history + input_messages(body.input)
    system = [{"role": "system", "content": body.instructions}] if body.instructions else []
    chat: dict[str, Any] = {"model": body.model, "messages": system + conversation, "stream": bool(body.stream)}
    chat.update({k: raw[k] for k in _PASSED if raw.get(k) is not None})
    if body.tools:
        chat["tools"] = _tools(body.tools)
    if isinstance(body.tool_choice, dict):
        chat["tool_choice"] = {"type": "function", "function": {"name": body.tool_choice.get("name")}}
    elif body.tool_choice is not None:
        chat["tool_choice"] = body.tool_choice
    if body.text and (fmt := _response_format(body.text)):
        chat["response_format"] = fmt
    if body.max_output_tokens is not None:
        chat["max_tokens"] = body.max_output_tokens
    request = chat_request(chat, raw, "input")
    return request, chat, conversation


def _skeleton(body: ResponsesRequest, response_id: str, status: str) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body.model,
        "output": [],
        "instructions": body.instructions,
        "error": None,
        "incomplete_details": None,
        "previous_response_id": body.previous_response_id,
        "tools": body.tools or [],
        "tool_choice": body.tool_choice or "auto",
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "text": body.text or {"format": {"type": "text"}},
        "store": body.store is not False,
        "truncation": "disabled",
        "reasoning": {"effort": None, "summary": None},
        "user": body.user,
        "usage": None,
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": call["function"]["arguments"] if status == "completed" else "",
        "status": status,
    }


def to_response(
    body: ResponsesRequest, outcome: ChatOutcome, response_id: str, item_ids: dict[Any, str] | None = None
) -> dict[str, Any]:
    """The Response object of a finished chat outcome (``item_ids`` keeps the ids a stream announced)."""
    ids = item_ids or {}
    response = _skeleton(body, response_id, "completed")
    output: list[dict[str, Any]] = []
    if outcome.text or not outcome.tool_calls:
        output.append(_message_item(ids.get("text") or "msg_" + uuid.uuid4().hex, outcome.text))
    for index, call in enumerate(outcome.tool_calls):
        output.append(_call_item(ids.get(index) or "fc_" + uuid.uuid4().hex, call))
    reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(outcome.finish_reason)
    if reason:
        response.update(status="incomplete", incomplete_details={"reason": reason})
    usage = outcome.usage or {}
    response.update(
        output=output,
        greenlist=outcome.greenlist,
        usage={
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    )
    return response


def output_messages(outcome: ChatOutcome) -> list[dict[str, Any]]:
    """The assistant turn of ``outcome`` as chat messages (kept for ``previous_response_id``)."""
    message: dict[str, Any] = {"role": "assistant", "content": outcome.text or None}
    if outcome.tool_calls:
        message["tool_calls"] = outcome.tool_calls
    return [message]


async def stream_events(
    body: ResponsesRequest, result: ChatStream, response_id: str, finished: Any
) -> AsyncIterator[str]:
    """Render a chat stream as Responses API server-sent events.

    Args:
        body: The Responses request.
        result: The chat flow's stream.
        response_id: The response's id.
        finished: Called with the final Response object and the outcome (to store it).
    """
    seq = 0

    def event(kind: str, **data: Any) -> str:
        nonlocal seq
        seq += 1
        return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': seq - 1, **data})}\n\n"

    skeleton = _skeleton(body, response_id, "in_progress")
    yield event("response.created", response=skeleton)
    yield event("response.in_progress", response=skeleton)
    outcome, ids, slots = ChatOutcome(), dict[Any, str](), dict[Any, int]()
    open_text: str | None = None

    def close_text() -> list[str]:
        nonlocal open_text
        if open_text is None:
            return []
        item, open_text = open_text, None
        where = {"item_id": item, "output_index": slots["text"], "content_index": 0}
        part = {"type": "output_text", "text": outcome.text, "annotations": []}
        return [
            event("response.output_text.done", **where, text=outcome.text, logprobs=[]),
            event("response.content_part.done", **where, part=part),
            event("response.output_item.done", output_index=slots["text"], item=_message_item(item, outcome.text)),
        ]

    async for kind, data in read_chunks(result.chunks, outcome):
        if kind == "error":
            yield event("error", code=data.get("code"), message=data.get("message"), param=data.get("param"))
            return
        if kind == "text":
            if open_text is None and "text" not in ids:
                open_text = ids["text"] = "msg_" + uuid.uuid4().hex
                slots["text"] = len(slots)
                yield event(
                    "response.output_item.added",
                    output_index=slots["text"],
                    item=_message_item(open_text, "", "in_progress"),
                )
                yield event(
                    "response.content_part.added",
                    item_id=open_text,
                    output_index=slots["text"],
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": []},
                )
            yield event(
                "response.output_text.delta",
                item_id=ids["text"],
                output_index=slots["text"],
                content_index=0,
                delta=data,
                logprobs=[],
            )
        elif kind == "tool":
            for done in close_text():
                yield done
            index, call_id, name = data
            ids[index], slots[index] = "fc_" + uuid.uuid4().hex, len(slots)
            call = {"id": call_id, "function": {"name": name, "arguments": ""}}
            yield event(
                "response.output_item.added",
                output_index=slots[index],
                item=_call_item(ids[index], call, "in_progress"),
            )
        elif kind == "arguments":
            index, piece = data
            yield event(
                "response.function_call_arguments.delta", item_id=ids[index], output_index=slots[index], delta=piece
            )
    for done in close_text():
        yield done
    for index, call in enumerate(outcome.tool_calls):
        yield event(
            "response.function_call_arguments.done",
            item_id=ids[index],
            output_index=slots[index],
            name=call["function"]["name"],
            arguments=call["function"]["arguments"],
        )
        yield event("response.output_item.done", output_index=slots[index], item=_call_item(ids[index], call))
    response = to_response(body, outcome, response_id, ids)
    finished(response, outcome)
    yield event(
        "response.incomplete" if response["status"] == "incomplete" else "response.completed", response=response
    )
