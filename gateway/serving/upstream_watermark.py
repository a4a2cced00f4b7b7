"""Confirming a watermark applied by the upstream (Greenlist's vLLM logits processor), by verifying its text.

The vLLM plugin cannot add a field to vLLM's response, and a row it could not watermark (an unknown key id,
async-scheduling placeholders: docs/vllm.md) comes back as ordinary text. So the gateway verifies the returned
text with the key it named: ``watermark.applied`` is true, with that key id, only when the text verifies as
``watermarked`` with it; otherwise the ``greenlist`` object says why not.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway.backends.base import Generation, GenerationRequest

if TYPE_CHECKING:
    from gateway.state import Gateway


async def confirm_upstream_watermark(gw: Gateway, request: GenerationRequest, generation: Generation) -> Generation:
    """Set ``generation.watermark_key_id`` only when the upstream's text verifies with the requested key.

    Args:
        gw: The gateway (its verifier holds the same key set as the vLLM server).
        request: The request sent upstream (``watermark_key_id``: the key named in ``vllm_xargs``).
        generation: The upstream's answer.

    Returns:
        ``generation``, changed in place: ``watermark_key_id`` the confirmed key id or None, and
        ``watermark_note`` saying why a requested watermark is not confirmed. Unchanged for a backend that
        applies the watermark itself.
    """
    if gw.backend.confirms_watermark != "verify" or request.watermark_key_id is None or request.watermark_delta is None:
        return generation
    if not generation.text.strip():
        generation.watermark_key_id, generation.watermark_note = None, "no text generated"
        return generation
    result = await asyncio.to_thread(gw.verifier.verify, generation.text)
    if result["verdict"] == "watermarked" and result["key_id"] == request.watermark_key_id:
        generation.watermark_key_id, generation.watermark_note = request.watermark_key_id, None
    else:
        generation.watermark_key_id = None
        generation.watermark_note = (
            f"the upstream's text did not verify with key {request.watermark_key_id} "
            f"(verdict {result['verdict']}, z = {result.get('z_score')})"
        )
    return generation
