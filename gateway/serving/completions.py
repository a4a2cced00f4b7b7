"""The request pipeline of ``/v1/chat/completions`` and ``/v1/completions``, top to bottom.

1. Resolve the policy; refuse fields the backend cannot honour (:mod:`gateway.backends.fields`); check each
   message the policy's ``input.roles`` names with its ``input`` guardrails
   (:func:`gateway.serving.conversation.check_messages`). A blocked prompt gets HTTP 400 with
   ``code: "content_filter"``; a redacted message is sent redacted.
2. Generate (watermarked when the policy and the backend allow); the ``openai`` backend forwards the client's
   body as received.
3. Check the output with the ``output`` guardrails: the text (whole, or, when streaming, window by window and
   then whole: :class:`gateway.serving.streaming.StreamGuard`) and each tool call's arguments
   (:func:`gateway.serving.conversation.check_tool_calls`; streamed tool-call deltas are held until checked).
4. Answer in OpenAI's shape plus a ``greenlist`` object (on the last chunk of a stream) and an
   ``x-greenlist-decision`` header. A blocked output ends with ``finish_reason: "content_filter"`` and the
   policy's refusal message.

:func:`serve` returns the answer as data (a completion dict, or a :class:`ChatStream` of chunk dicts) so the
Responses and Messages APIs translate it (:mod:`gateway.serving.responses`, :mod:`gateway.serving.messages`);
:func:`complete` renders it for ``/v1/chat/completions`` and ``/v1/completions``.

Long module: the request pipeline reads top to bottom in one place (the streamed and non-streamed paths side by side).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.api.schemas import ChatCompletionRequest, CompletionRequest
from gateway.backends.base import Generation, GenerationRequest, GenerationStream
from gateway.backends.fields import reject_unsupported
from gateway.errors import APIError
from gateway.observability import records
from gateway.security.limits import GenerationLimiter, GuardedStreamingResponse, check_prompt_tokens, stream_error
from gateway.serving.conversation import check_messages, check_tool_calls, content_text
from gateway.serving.pipeline import Pipeline, Verdict
from gateway.serving.streaming import StreamGuard
from gateway.serving.upstream_watermark import confirm_upstream_watermark
from gateway.state import Gateway
from guardrails import Decision, Direction, most_severe

DECISION_HEADER = "x-greenlist-decision"
log = logging.getLogger("greenlist.completions")


Body = ChatCompletionRequest | CompletionRequest


@dataclass
class ChatStream:
    """A streamed answer as data: chunk dicts in OpenAI's shape (``chat.completion.chunk`` or
    ``text_completion``), an ``{"error": ...}`` dict when generation failed after the first chunk; the last chunk
    carries the ``greenlist`` object.

    Attributes:
        chunks: The chunks (no ``[DONE]`` marker).
        decision: The input decision (the ``x-greenlist-decision`` header of a stream).
        on_close: Called when the client goes away or the stream ends (stop generating, free the slot).
    """

    chunks: AsyncIterator[dict[str, Any]]
    decision: Decision
    on_close: list[Callable[[], Any]] = field(default_factory=list)


def conversation(body: Body) -> list[dict[str, Any]]:
    """The request's turns as chat message dicts (a text completion's prompt is one user turn)."""
    if isinstance(body, ChatCompletionRequest):
        return [m.model_dump(exclude_unset=True) for m in body.messages]
    return [{"role": "user", "content": body.prompt_text()}]


def _prompt_param(body: Body) -> str:
    """The request field that holds the prompt, for error messages."""
    return "messages" if isinstance(body, ChatCompletionRequest) else "prompt"


def _generation_request(
    gw: Gateway, pipeline: Pipeline, body: Body, raw: dict[str, Any], messages: list[dict[str, Any]]
) -> GenerationRequest:
    if gw.backend.supported_fields is not None:
        reject_unsupported(raw, gw.backend.supported_fields, gw.backend.unsupported_reasons)
    gw.backend.validate(raw)
    limit = gw.settings.max_new_tokens_limit
    max_tokens = (
        getattr(body, "max_completion_tokens", None)
        or body.max_tokens
        or min(gw.settings.max_new_tokens_default, limit)
    )
    if max_tokens > limit:
        raise APIError(
            400,
            f"max_tokens {max_tokens} is above this server's limit max_new_tokens_limit={limit}",
            param="max_tokens",
            code="max_tokens_limit",
        )
    if gw.backend.model_ids and body.model not in gw.backend.model_ids:
        raise APIError(
            404,
            f"model {body.model!r} not found; this server serves {gw.backend.model_ids}",
            param="model",
            code="model_not_found",
        )
    watermark = pipeline.policy.watermark
    temperature, top_p = body.sampling()
    chat = isinstance(body, ChatCompletionRequest)
    return GenerationRequest(
        model=body.model,
        messages=messages if chat else None,
        prompt=None if chat else content_text(messages[0]),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=body.seed,
        stop=body.stops(),
        watermark_delta=watermark.delta if watermark.enabled and gw.backend.watermarks else None,
        watermark_key_id=gw.keyring.active.key_id if watermark.enabled and gw.backend.watermarks else None,
        body={**raw, "prompt": content_text(messages[0])} if not chat else raw,
    )


def greenlist_object(
    gw: Gateway,
    pipeline: Pipeline,
    decision: Decision,
    input_verdict: Verdict,
    output_verdict: Verdict | None = None,
    key_id: str | None = None,
    streaming: dict[str, Any] | None = None,
    watermark_note: str | None = None,
) -> dict[str, Any]:
    """The ``greenlist`` object every response carries."""
    policy = pipeline.policy
    if key_id:
        watermark = {"applied": True, "key_id": key_id, "delta": policy.watermark.delta}
    else:
        reason = watermark_note or (
            "disabled by policy"
            if not policy.watermark.enabled
            else "upstream backend output is not watermarked"
            if not gw.backend.watermarks
            else "no text generated"
        )
        watermark = {"applied": False, "key_id": None, "reason": reason}
    out: dict[str, Any] = {
        "policy": {"name": pipeline.name, "version": pipeline.version},
        "decision": decision.value,
        "input": input_verdict.to_dict(),
        "output": output_verdict.to_dict() if output_verdict else None,
        "watermark": watermark,
    }
    if streaming is not None:
        out["streaming"] = streaming
    return out


async def check_prompt(
    gw: Gateway,
    pipeline: Pipeline,
    body: Body,
    ctx: records.RequestContext | None = None,
    shadow: Pipeline | None = None,
) -> tuple[Verdict, list[dict[str, Any]]]:
    """Step 1: run the input guardrails on each checked message (audited; ``shadow`` checked beside).

    Returns:
        ``(verdict, messages to send)`` (redactions applied).

    Raises:
        APIError: 400 ``content_filter`` when a message is blocked.
    """
    verdict, messages = await check_messages(pipeline, conversation(body))
    ctx = ctx or records.request_context()
    records.after_check(gw, ctx, pipeline, verdict, verdict.text, shadow)
    if verdict.decision is Decision.BLOCK:
        raise APIError(
            400,
            f"the prompt was blocked by the content policy: {pipeline.policy.refusal_message}",
            code="content_filter",
            param=_prompt_param(body),
            extra={
                "greenlist": {**greenlist_object(gw, pipeline, Decision.BLOCK, verdict), "request_id": ctx.request_id}
            },
            headers={DECISION_HEADER: Decision.BLOCK.value},
        )
    return verdict, messages


async def complete(
    gw: Gateway,
    body: Body,
    limiter: GenerationLimiter | None = None,
    request: Any = None,
    raw: dict[str, Any] | None = None,
) -> JSONResponse | StreamingResponse:
    """Serve one ``/v1/chat/completions`` or ``/v1/completions`` request, streamed or not (see :func:`serve`)."""
    result = await serve(gw, body, raw, limiter, request)
    if isinstance(result, dict):
        return JSONResponse(result, headers={DECISION_HEADER: result["greenlist"]["decision"]})
    return sse_response(result, (f"data: {json.dumps(c)}\n\n" async for c in result.chunks))


def sse_response(result: ChatStream, events: AsyncIterator[str], done: bool = True) -> StreamingResponse:
    """Render server-sent ``events`` of ``result`` (with a final ``data: [DONE]`` when ``done``)."""

    async def framed() -> AsyncIterator[str]:
        async for event in events:
            yield event
        if done:
            yield "data: [DONE]\n\n"

    return GuardedStreamingResponse(
        framed(),
        media_type="text/event-stream",
        on_close=result.on_close,
        headers={DECISION_HEADER: result.decision.value, "cache-control": "no-cache"},
    )


async def serve(
    gw: Gateway,
    body: Body,
    raw: dict[str, Any] | None = None,
    limiter: GenerationLimiter | None = None,
    request: Any = None,
) -> dict[str, Any] | ChatStream:
    """Serve one completion request, streamed or not, as data.

    Args:
        gw: The gateway.
        body: The validated request body.
        raw: The body as the client sent it (forwarded upstream; checked against the backend's supported fields);
            default: the validated body's fields that were set.
        limiter: Bounds concurrent generations (429 when the wait queue is full); None for no bound.
        request: The Starlette request (tenant and scopes for policy matching and the audit log).

    Returns:
        The completion body (OpenAI's shape plus ``greenlist``), or a :class:`ChatStream`.

    Raises:
        APIError: 400 (blocked prompt, unsupported field, limits), 404 (model), 429, 502/503/504 (upstream).
    """
    raw = raw if raw is not None else body.model_dump(exclude_unset=True)
    ctx = records.request_context(request)
    resolution = records.resolve(gw, ctx, body.greenlist.policy if body.greenlist else None, body.model)
    pipeline = resolution.pipeline
    _generation_request(gw, pipeline, body, raw, conversation(body))  # refuse a bad request before any scan
    if gw.backend.breaker is not None:
        gw.backend.breaker.fail_fast()  # upstream down: refuse before spending guardrail time
    whole_prompt = "\n".join(content_text(m) for m in conversation(body))
    await check_prompt_tokens(gw.verifier.tokenizer, whole_prompt, gw.settings.max_prompt_tokens, _prompt_param(body))
    slot, early, checked = None, None, None
    try:
        if pipeline.policy.input_mode == "during_call" and gw.backend.remote:
            # the upstream call starts now, on the prompt as the client sent it; it is kept only if the input
            # guardrails let that prompt through unchanged
            slot = await limiter.acquire() if limiter is not None else None
            early_request = _generation_request(gw, pipeline, body, raw, conversation(body))
            early = _start(gw, body, early_request)
            if not body.stream:  # its answer is checked as soon as it arrives, beside the prompt check
                checked = asyncio.ensure_future(_checked(gw, pipeline, early_request, early, conversation(body)))
        input_verdict, messages = await check_prompt(gw, pipeline, body, ctx, resolution.shadow)
        generation_request = _generation_request(gw, pipeline, body, raw, messages)
        if early is not None and messages != conversation(body):  # redacted: send the redacted prompt instead
            await _discard(checked)
            await _discard(early)
            early = checked = None
        if slot is None and limiter is not None:
            slot = await limiter.acquire()
        started = early or _start(gw, body, generation_request)
        if body.stream:
            opened = await started
            return await _stream(
                gw, pipeline, body, generation_request, input_verdict, opened, slot, ctx, resolution.shadow
            )
        if checked is not None:
            generation, output_verdict = await checked
        else:
            generation = await started
    except BaseException:
        await _discard(checked)
        await _discard(early)  # a blocked prompt (or any failure) drops the early call, closing its stream
        if slot is not None:
            slot.release()
        raise
    if slot is not None:
        slot.release()
    if checked is None:
        generation = await confirm_upstream_watermark(gw, generation_request, generation)
        output_verdict = await pipeline.check(generation.text, Direction.OUTPUT, messages=messages)
    records.after_check(gw, ctx, pipeline, output_verdict, generation.text, resolution.shadow)
    calls = generation.tool_calls
    if calls:
        output_verdict, calls = await check_tool_calls(pipeline, calls, output_verdict, messages)
    decision = most_severe([input_verdict.decision, output_verdict.decision])
    if output_verdict.decision is Decision.BLOCK:
        text, finish, calls = pipeline.policy.refusal_message, "content_filter", None
    else:
        text, finish = output_verdict.text, generation.finish_reason
    greenlist = greenlist_object(
        gw,
        pipeline,
        decision,
        input_verdict,
        output_verdict,
        generation.watermark_key_id,
        watermark_note=generation.watermark_note,
    )
    greenlist["request_id"] = ctx.request_id
    return _completion_body(body, text, finish, generation, greenlist, calls)


async def _checked(
    gw: Gateway,
    pipeline: Pipeline,
    request: GenerationRequest,
    started: asyncio.Task[Any],
    messages: list[dict[str, Any]],
) -> tuple[Generation, Verdict]:
    """The generation of ``started`` (upstream watermark confirmed) and its output verdict.

    In ``during_call`` mode the output guardrails thus run while the prompt's still may: on two cores the two
    checks overlap instead of taking turns. The verdict is used only when the prompt passed unchanged.
    """
    generation = await confirm_upstream_watermark(gw, request, await started)
    return generation, await pipeline.check(generation.text, Direction.OUTPUT, messages=messages)


def _start(gw: Gateway, body: Body, request: GenerationRequest) -> asyncio.Task[Any]:
    """Start generating ``request`` (a whole completion, or opening the stream: upstream errors surface when the
    task is awaited, before any byte is sent)."""
    call = gw.backend.stream(request) if body.stream else gw.backend.generate(request)
    return asyncio.ensure_future(call)


async def _discard(task: asyncio.Task[Any] | None) -> None:
    """Cancel a started generation nobody will use, closing its stream if it had opened; its errors are dropped."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is None and isinstance(task.result(), GenerationStream):
        with anyio.CancelScope(shield=True):
            await task.result().aclose()


def _completion_body(
    body: Body,
    text: str,
    finish: str,
    generation: Generation,
    greenlist: dict[str, Any],
    calls: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    chat = isinstance(body, ChatCompletionRequest)
    logprobs = generation.logprobs if finish != "content_filter" else None
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs}
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}
    return {
        "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [choice],
        "usage": _usage(generation),
        "greenlist": greenlist,
    }


def _usage(generation: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


async def _stream(
    gw: Gateway,
    pipeline: Pipeline,
    body: Body,
    request: GenerationRequest,
    input_verdict: Verdict,
    stream: GenerationStream,
    slot: Any = None,
    ctx: records.RequestContext | None = None,
    shadow: Pipeline | None = None,
) -> ChatStream:
    ctx = ctx or records.request_context()
    chat = isinstance(body, ChatCompletionRequest)
    meta = {
        "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.model,
    }
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    messages = request.messages or conversation(body)

    def chunk(
        text: str | None, finish: str | None = None, fields: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {"content": text} if text is not None else {}
            choice = {"index": 0, "delta": {**delta, **(fields or {})}, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        return {**meta, "choices": [choice], **extra}

    async def events() -> AsyncIterator[dict[str, Any]]:
        guard = StreamGuard(pipeline, pipeline.policy.streaming, messages)
        if chat:
            yield chunk("", fields={"role": "assistant"})
        verdict: Verdict | None = None
        held: list[dict[str, Any]] = []  # tool-call deltas, sent once the arguments passed the output guardrails
        try:
            async for delta in stream:
                if isinstance(delta, dict):
                    held.append(delta)
                    continue
                released, verdict = await guard.feed(delta)
                if released:
                    yield chunk(released)
                if verdict is not None:  # a window blocked: stop generating
                    break
            if verdict is None:
                released, verdict = await guard.finish()
                if released:
                    yield chunk(released)
        except Exception as exc:  # noqa: BLE001 - headers are sent: report in the stream, never a broken 500
            if not isinstance(exc, APIError):
                log.exception("generation failed while streaming")
            yield stream_error(exc)
            return
        finally:
            with anyio.CancelScope(shield=True):  # the client may have left: still stop the generation
                await stream.aclose()
        generation = stream.result or Generation(guard.text, "stop", 0, 0)
        if generation.tool_calls and verdict.decision is not Decision.BLOCK:
            verdict, _ = await check_tool_calls(pipeline, generation.tool_calls, verdict, messages)
        blocked = verdict.decision is Decision.BLOCK
        if blocked:
            yield chunk(pipeline.policy.refusal_message)
        else:
            for fields in held:
                yield chunk(None, fields=fields)
        decision = most_severe([input_verdict.decision, verdict.decision])
        generation = await confirm_upstream_watermark(gw, request, generation)
        key_id = request.watermark_delta is not None and generation.watermark_key_id or None
        greenlist = greenlist_object(
            gw, pipeline, decision, input_verdict, verdict, key_id, guard.summary(), generation.watermark_note
        )
        greenlist["request_id"] = ctx.request_id
        records.after_check(gw, ctx, pipeline, verdict, generation.text or guard.text, shadow)
        final = chunk(None, "content_filter" if blocked else generation.finish_reason)
        if include_usage:
            yield final
            final = {**meta, "choices": [], "usage": _usage(generation)}
        yield {**final, "greenlist": greenlist}  # the greenlist object rides on the last chunk

    on_close: list[Callable[[], Awaitable[None] | None]] = [stream.aclose]
    if slot is not None:
        on_close.append(slot.release)
    return ChatStream(events(), input_verdict.decision, on_close)
