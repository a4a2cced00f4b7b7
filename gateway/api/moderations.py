"""``/v1/moderations``: OpenAI's moderation shape, computed by the policy's moderator guardrail.

The moderator is the first guardrail of the default policy that implements
:class:`guardrails.Moderator` (output side first), else the registry's default
(:func:`guardrails.default_moderator`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import gateway_of, settings_of
from gateway.api.schemas import ModerationRequest
from gateway.errors import APIError
from gateway.observability import records
from gateway.security.limits import check_moderation_inputs, check_text_length
from gateway.state import Gateway
from guardrails import Moderator, default_moderator

router = APIRouter()


@router.post("/v1/moderations")
async def moderations(body: ModerationRequest, request: Request) -> dict[str, Any]:
    """OpenAI moderations, computed by Greenlist's moderator guardrail."""
    settings = settings_of(request)
    check_moderation_inputs(body.inputs(), settings.max_moderation_inputs)
    check_text_length(body.input, settings.max_text_chars, "input")
    gw = gateway_of(request)
    moderator = _moderator(gw)
    started = time.perf_counter()
    results = await asyncio.to_thread(moderator.moderate, body.input)
    records.audit_moderation(
        gw,
        records.request_context(request),
        moderator.name,
        body.inputs(),
        results,
        (time.perf_counter() - started) * 1000.0,
    )
    return {"id": f"modr-{time.time_ns():x}", "model": body.model or moderator.moderation_model, "results": results}


def _moderator(gw: Gateway) -> Moderator:
    found = gw.pipeline.moderator()
    if found is not None:
        return found
    try:
        return default_moderator()
    except Exception as exc:  # noqa: BLE001 - a missing model is a 503, not a 500
        raise APIError(
            503, f"moderation model unavailable: {exc}", type="server_error", code="model_unavailable"
        ) from None
