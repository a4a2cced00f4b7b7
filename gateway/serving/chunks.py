"""Reading the chat flow's streamed chunks back as simple events, for the APIs translated to chat completions.

:func:`read_chunks` turns the chunk dicts of a :class:`gateway.serving.completions.ChatStream` into
``(kind, data)`` events (text deltas, tool-call starts and argument pieces, errors) while a
:class:`ChatOutcome` accumulates what a final answer needs (text, tool calls, finish reason, usage, the
``greenlist`` object). The Responses and Messages translators (:mod:`gateway.serving.responses`,
:mod:`gateway.serving.messages`) render the events in their own streaming shapes; :func:`chat_request` is the
other half they share (their translated body, validated as a chat completion request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gateway.api.schemas import ChatCompletionRequest
from gateway.backends.toolcalls import ToolCallAssembler
from gateway.errors import APIError


def chat_request(chat: dict[str, Any], raw: dict[str, Any], param: str) -> ChatCompletionRequest:
    """Validate a translated body as a chat completion request (with the client's ``greenlist`` options).

    Turns on ``stream_options.include_usage`` for a stream (the translated APIs report usage).

    Raises:
        APIError: 400 ``invalid_value`` naming ``param`` (the translated API's field) when it is not valid.
    """
    if chat.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    try:
        return ChatCompletionRequest.model_validate({**chat, "greenlist": raw.get("greenlist")})
    except ValidationError as exc:
        raise APIError(400, f"{param}: {exc.errors()[0]['msg']}", param=param, code="invalid_value") from None


@dataclass
class ChatOutcome:
    """A chat completion's result in one place (from a whole completion, or accumulated from chunks).

    Attributes:
        text: The assistant text.
        tool_calls: Tool calls in OpenAI's chat shape.
        finish_reason: ``stop``, ``length``, ``tool_calls`` or ``content_filter``.
        usage: ``{"prompt_tokens", "completion_tokens", "total_tokens"}``.
        greenlist: The ``greenlist`` object.
        error: The ``error`` object of a failure after streaming started, or None.
    """

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)
    greenlist: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def of(cls, completion: dict[str, Any]) -> ChatOutcome:
        """The outcome of a non-streamed chat completion body."""
        choice = completion["choices"][0]
        message = choice["message"]
        return cls(
            message.get("content") or "",
            list(message.get("tool_calls") or []),
            choice.get("finish_reason") or "stop",
            completion.get("usage") or {},
            completion.get("greenlist"),
        )


async def read_chunks(chunks: AsyncIterator[dict[str, Any]], outcome: ChatOutcome) -> AsyncIterator[tuple[str, Any]]:
    """Yield ``("text", delta)``, ``("tool", (index, id, name))`` when a tool call starts,
    ``("arguments", (index, piece))`` and ``("error", error)``; fill ``outcome`` as chunks arrive."""
    calls = ToolCallAssembler()
    async for chunk in chunks:
        if "error" in chunk:
            outcome.error = chunk["error"]
            yield "error", chunk["error"]
            return
        outcome.usage = chunk.get("usage") or outcome.usage
        outcome.greenlist = chunk.get("greenlist") or outcome.greenlist
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                outcome.text += delta["content"]
                yield "text", delta["content"]
            for piece in delta.get("tool_calls") or []:
                index = int(piece.get("index", 0))
                new = index not in calls.calls
                calls.add([piece])
                if new:
                    yield "tool", (index, calls.calls[index]["id"], calls.calls[index]["function"]["name"])
                if arguments := (piece.get("function") or {}).get("arguments"):
                    yield "arguments", (index, arguments)
            if choice.get("finish_reason"):
                outcome.finish_reason = choice["finish_reason"]
    outcome.tool_calls = calls.result() or []
