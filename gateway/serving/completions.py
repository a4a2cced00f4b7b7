"""The request pipeline of ``/v1/chat/completions`` and ``/v1/completions``, top to bottom.

1. Resolve the policy; check the prompt with its ``input`` guardrails. A
   blocked prompt gets HTTP 400 with ``code: "content_filter"``.
2. Generate (watermarked when the policy and the backend allow).
3. Check the output with the ``output`` guardrails: on the whole text, or,
   when streaming, window by window and then on the whole text
   (:class:`gateway.serving.streaming.StreamGuard`).
4. Answer in OpenAI's shape plus a ``greenlist`` object and an
   ``x-greenlist-decision`` header. A blocked output ends with
   ``finish_reason: "content_filter"`` and the policy's refusal message.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.observability import records
from gateway.backends.base import Generation, GenerationRequest
from gateway.errors import APIError
from gateway.security.limits import GenerationLimiter, GuardedStreamingResponse, check_prompt_tokens, sse_error
from gateway.serving.pipeline import Pipeline, Verdict
from gateway.api.schemas import ChatCompletionRequest, CompletionRequest
from gateway.state import Gateway
from gateway.serving.streaming import StreamGuard
from guardrails import Decision, Direction, most_severe

DECISION_HEADER = "x-greenlist-decision"
log = logging.getLogger("greenlist.completions")


def prompt_text(body: ChatCompletionRequest | CompletionRequest) -> str:
    """The text the input guardrails check: the user-side messages (not assistant turns) or the prompt."""
    if isinstance(body, ChatCompletionRequest):
        return "\n".join(m.text() for m in body.messages if m.role != "assistant")
    return str(body.prompt)


def conversation(body: ChatCompletionRequest | CompletionRequest) -> list[dict[str, Any]]:
    """The request's turns as ``{"role", "content"}`` dicts (a text completion's prompt is one user turn)."""
    if isinstance(body, ChatCompletionRequest):
        return [{"role": m.role, "content": m.text()} for m in body.messages]
    return [{"role": "user", "content": str(body.prompt)}]


def _prompt_param(body: ChatCompletionRequest | CompletionRequest) -> str:
    """The request field that holds the prompt, for error messages."""
    return "messages" if isinstance(body, ChatCompletionRequest) else "prompt"


def _generation_request(gw: Gateway, pipeline: Pipeline, body: ChatCompletionRequest | CompletionRequest) -> GenerationRequest:
    limit = gw.settings.max_new_tokens_limit
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens or min(gw.settings.max_new_tokens_default, limit)
    if max_tokens > limit:
        raise APIError(400, f"max_tokens {max_tokens} is above this server's limit max_new_tokens_limit={limit}",
                       param="max_tokens", code="max_tokens_limit")
    if gw.backend.model_ids and body.model not in gw.backend.model_ids:
        raise APIError(404, f"model {body.model!r} not found; this server serves {gw.backend.model_ids}",
                       param="model", code="model_not_found")
    watermark = pipeline.policy.watermark
    return GenerationRequest(
        model=body.model,
        messages=[{"role": m.role, "content": m.text()} for m in body.messages]
        if isinstance(body, ChatCompletionRequest) else None,
        prompt=body.prompt_text() if isinstance(body, CompletionRequest) else None,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stops(),
        watermark_delta=watermark.delta if watermark.enabled and gw.backend.watermarks else None,
    )


def greenlist_object(gw: Gateway, pipeline: Pipeline, decision: Decision, input_verdict: Verdict,
                     output_verdict: Verdict | None = None, key_id: str | None = None,
                     streaming: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``greenlist`` object every response carries."""
    policy = pipeline.policy
    if key_id:
        watermark = {"applied": True, "key_id": key_id, "delta": policy.watermark.delta}
    else:
        reason = ("disabled by policy" if not policy.watermark.enabled
                  else "upstream backend output is not watermarked" if not gw.backend.watermarks
                  else "no text generated")
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


async def check_prompt(gw: Gateway, pipeline: Pipeline, body: ChatCompletionRequest | CompletionRequest,
                       ctx: records.RequestContext | None = None, shadow: Pipeline | None = None) -> Verdict:
    """Step 1: run the input guardrails (audited; ``shadow`` checked beside); raise the content-filter error when blocked."""
    verdict = await pipeline.check(prompt_text(body), Direction.INPUT, messages=conversation(body))
    ctx = ctx or records.request_context()
    records.after_check(gw, ctx, pipeline, verdict, prompt_text(body), shadow)
    if verdict.decision is Decision.BLOCK:
        raise APIError(
            400, f"the prompt was blocked by the content policy: {pipeline.policy.refusal_message}",
            code="content_filter", param=_prompt_param(body),
            extra={"greenlist": {**greenlist_object(gw, pipeline, Decision.BLOCK, verdict), "request_id": ctx.request_id}},
            headers={DECISION_HEADER: Decision.BLOCK.value},
        )
    return verdict


async def complete(gw: Gateway, body: ChatCompletionRequest | CompletionRequest,
                   limiter: GenerationLimiter | None = None, request: Any = None) -> JSONResponse | StreamingResponse:
    """Serve one completion request, streamed or not.

    Args:
        gw: The gateway.
        body: The request body.
        limiter: Bounds concurrent generations (429 when the wait queue is full); None for no bound.
        request: The Starlette request (tenant and scopes for policy matching and the audit log).
    """
    ctx = records.request_context(request)
    resolution = records.resolve(gw, ctx, body.greenlist.policy if body.greenlist else None, body.model)
    pipeline = resolution.pipeline
    generation_request = _generation_request(gw, pipeline, body)
    if gw.backend.breaker is not None:
        gw.backend.breaker.fail_fast()  # upstream down: refuse before spending guardrail time
    whole_prompt = body.prompt if isinstance(body, CompletionRequest) else "\n".join(m.text() for m in body.messages)
    await check_prompt_tokens(gw.verifier.tokenizer, str(whole_prompt), gw.settings.max_prompt_tokens,
                              _prompt_param(body))
    input_verdict = await check_prompt(gw, pipeline, body, ctx, resolution.shadow)
    slot = await limiter.acquire() if limiter is not None else None
    if body.stream:
        try:
            return await _stream(gw, pipeline, body, generation_request, input_verdict, slot, ctx, resolution.shadow)
        except BaseException:
            if slot is not None:
                slot.release()
            raise

    try:
        generation = await gw.backend.generate(generation_request)
    finally:
        if slot is not None:
            slot.release()
    output_verdict = await pipeline.check(generation.text, Direction.OUTPUT, messages=conversation(body))
    records.after_check(gw, ctx, pipeline, output_verdict, generation.text, resolution.shadow)
    decision = most_severe([input_verdict.decision, output_verdict.decision])
    if output_verdict.decision is Decision.BLOCK:
        text, finish = pipeline.policy.refusal_message, "content_filter"
    else:
        text, finish = output_verdict.text, generation.finish_reason
    greenlist = greenlist_object(gw, pipeline, decision, input_verdict, output_verdict, generation.watermark_key_id)
    greenlist["request_id"] = ctx.request_id
    return JSONResponse(_completion_body(body, text, finish, generation, greenlist),
                        headers={DECISION_HEADER: decision.value})


def _completion_body(body: ChatCompletionRequest | CompletionRequest, text: str, finish: str,
                     generation: Generation, greenlist: dict[str, Any]) -> dict[str, Any]:
    chat = isinstance(body, ChatCompletionRequest)
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
              if chat else {"index": 0, "text": text, "finish_reason": finish, "logprobs": None})
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
    return {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens}


async def _stream(gw: Gateway, pipeline: Pipeline, body: ChatCompletionRequest | CompletionRequest,
                  request: GenerationRequest, input_verdict: Verdict, slot: Any = None,
                  ctx: records.RequestContext | None = None, shadow: Pipeline | None = None) -> StreamingResponse:
    ctx = ctx or records.request_context()
    chat = isinstance(body, ChatCompletionRequest)
    meta = {"id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": body.model}
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = await gw.backend.stream(request)  # upstream errors surface here, before any byte is sent

    def chunk(text: str | None, finish: str | None = None, **extra: Any) -> str:
        if chat:
            delta: dict[str, Any] = {"content": text} if text is not None else {}
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        return f"data: {json.dumps({**meta, 'choices': [choice], **extra})}\n\n"

    async def events() -> AsyncIterator[str]:
        guard = StreamGuard(pipeline, pipeline.policy.streaming, conversation(body))
        if chat:
            yield f"data: {json.dumps({**meta, 'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''}, 'finish_reason': None}]})}\n\n"
        verdict: Verdict | None = None
        try:
            async for delta in stream:
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
            yield sse_error(exc)
            yield "data: [DONE]\n\n"
            return
        finally:
            with anyio.CancelScope(shield=True):  # the client may have left: still stop the generation
                await stream.aclose()
        generation = stream.result or Generation(guard.text, "stop", 0, 0)
        blocked = verdict.decision is Decision.BLOCK
        if blocked:
            yield chunk(pipeline.policy.refusal_message)
        decision = most_severe([input_verdict.decision, verdict.decision])
        key_id = request.watermark_delta is not None and generation.watermark_key_id or None
        greenlist = greenlist_object(gw, pipeline, decision, input_verdict, verdict, key_id, guard.summary())
        greenlist["request_id"] = ctx.request_id
        records.after_check(gw, ctx, pipeline, verdict, generation.text or guard.text, shadow)
        yield chunk(None, "content_filter" if blocked else generation.finish_reason, greenlist=greenlist)
        if include_usage:
            yield f"data: {json.dumps({**meta, 'choices': [], 'usage': _usage(generation)})}\n\n"
        yield "data: [DONE]\n\n"

    on_close = [stream.aclose] + ([slot.release] if slot is not None else [])
    return GuardedStreamingResponse(events(), media_type="text/event-stream", on_close=on_close,
                                    headers={DECISION_HEADER: input_verdict.decision.value, "cache-control": "no-cache"})
