"""``/v1/watermark/verify``, ``/v1/watermark/keys`` and the ``/verify`` page for people."""

from __future__ import annotations

import asyncio
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from gateway.api.deps import gateway_of, settings_of
from gateway.api.schemas import VerifyRequest
from gateway.errors import APIError
from gateway.observability.metrics import WATERMARK_VERIFICATIONS
from gateway.security.auth import request_has_scope
from gateway.security.limits import check_text_length

router = APIRouter()


@router.post("/v1/watermark/verify")
async def verify(body: VerifyRequest, request: Request) -> dict[str, Any]:
    """Is this text watermarked by this gateway? z-test (and optionally WinMax) over the text's tokens."""
    check_text_length(body.text, settings_of(request).max_text_chars, "text")
    if body.detail and not request_has_scope(request, "verify:detail"):
        raise APIError(
            403,
            "per-token detail needs an API key with the verify:detail scope",
            type="permission_error",
            param="detail",
            code="insufficient_scope",
        )
    result: dict[str, Any] = await asyncio.to_thread(
        gateway_of(request).verifier.verify,
        body.text,
        windowed=body.windowed,
        detail=body.detail,
        certificate=body.certificate,
    )
    WATERMARK_VERIFICATIONS.labels(result["verdict"]).inc()
    return result


@router.get("/v1/watermark/keys")
async def watermark_keys(request: Request) -> dict[str, Any]:
    """Public keys that verify certificates, and the ids of the watermark keys (never their secrets)."""
    v = gateway_of(request).verifier
    return {
        "signing_keys": [v.signer.public()] if v.signer else [],
        "watermark_keys": [k.public() for k in v.keyring.keys],
        "active_watermark_key": v.keyring.active.key_id,
    }


@router.get("/verify", response_class=HTMLResponse, include_in_schema=False)
async def verify_page() -> HTMLResponse:
    """The verification page: paste a text, see the verdict, coloured tokens and the certificate."""
    return HTMLResponse(files("gateway").joinpath("static/verify.html").read_text("utf-8"))
