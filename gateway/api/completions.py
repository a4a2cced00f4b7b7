"""``/v1/chat/completions`` and ``/v1/completions``: handed to :func:`gateway.serving.completions.complete`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import gateway_of
from gateway.api.schemas import ChatCompletionRequest, CompletionRequest
from gateway.serving.completions import complete

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """OpenAI chat completions, guarded and watermarked."""
    return await complete(
        gateway_of(request), body, limiter=request.app.state.limiter, request=request, raw=await request.json()
    )


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    """OpenAI text completions, guarded and watermarked."""
    return await complete(
        gateway_of(request), body, limiter=request.app.state.limiter, request=request, raw=await request.json()
    )
