"""``/v1/guardrails/check``: run a policy's guardrails on a text without generating."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.api.deps import gateway_of, settings_of
from gateway.api.schemas import CheckRequest
from gateway.observability import records
from gateway.security.limits import check_text_length
from gateway.serving.completions import DECISION_HEADER
from guardrails import Direction

router = APIRouter()


@router.post("/v1/guardrails/check")
async def guardrails_check(body: CheckRequest, request: Request) -> JSONResponse:
    """Run a policy's guardrails on a text without generating."""
    check_text_length(body.text, settings_of(request).max_text_chars, "text")
    g = gateway_of(request)
    ctx = records.request_context(request)
    resolution = records.resolve(g, ctx, body.policy)
    pipeline = resolution.pipeline
    verdict = await pipeline.check(body.text, Direction(body.direction))
    records.after_check(g, ctx, pipeline, verdict, body.text, resolution.shadow)  # audit, metrics, shadow
    content = {
        "policy": {"name": pipeline.name, "version": pipeline.version},
        "direction": body.direction,
        "text": verdict.text,
        **verdict.to_dict(),
        "request_id": ctx.request_id,
    }
    return JSONResponse(
        content, headers={DECISION_HEADER: verdict.decision.value, records.REQUEST_ID_HEADER: ctx.request_id}
    )
