"""``/v1/messages`` (Anthropic Messages API): translated to the chat flow by :mod:`gateway.serving.messages`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.api.deps import gateway_of
from gateway.api.schemas import MessagesRequest
from gateway.serving import messages as translate
from gateway.serving.chunks import ChatOutcome
from gateway.serving.completions import DECISION_HEADER, serve, sse_response

router = APIRouter()


@router.post("/v1/messages")
async def create_message(body: MessagesRequest, request: Request) -> Any:
    """Create a message (guarded and watermarked as a chat completion); streamed as Messages events."""
    chat, raw = translate.to_chat(body, await request.json())
    result = await serve(gateway_of(request), chat, raw, request.app.state.limiter, request)
    if isinstance(result, dict):
        message = translate.to_message(body, ChatOutcome.of(result), translate.new_id())
        return JSONResponse(message, headers={DECISION_HEADER: result["greenlist"]["decision"]})
    return sse_response(result, translate.stream_events(body, result, translate.new_id()), done=False)
