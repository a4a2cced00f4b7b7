"""``/v1/responses`` (OpenAI Responses API): translated to the chat flow by :mod:`gateway.serving.responses`."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.api.deps import gateway_of
from gateway.api.schemas import ResponsesRequest
from gateway.serving import responses as translate
from gateway.serving.chunks import ChatOutcome
from gateway.serving.completions import DECISION_HEADER, serve, sse_response
from gateway.serving.response_store import ResponseStore

router = APIRouter()


def _store(request: Request) -> ResponseStore:
    return ResponseStore(gateway_of(request).settings.home / "responses")


@router.post("/v1/responses")
async def create_response(body: ResponsesRequest, request: Request) -> Any:
    """Create a model response (guarded and watermarked as a chat completion); streamed as Responses events."""
    store = _store(request)
    chat, raw, conversation = translate.to_chat(body, await request.json(), store)
    result = await serve(gateway_of(request), chat, raw, request.app.state.limiter, request)
    response_id = "resp_" + uuid.uuid4().hex

    def finished(response: dict[str, Any], outcome: ChatOutcome) -> None:
        if body.store is not False:
            store.save(response, conversation + translate.output_messages(outcome))

    if isinstance(result, dict):
        outcome = ChatOutcome.of(result)
        response = translate.to_response(body, outcome, response_id)
        finished(response, outcome)
        return JSONResponse(response, headers={DECISION_HEADER: result["greenlist"]["decision"]})
    return sse_response(result, translate.stream_events(body, result, response_id, finished), done=False)


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> Any:
    """A stored response (404 ``response_not_found`` when unknown or stored with ``store: false``)."""
    return _store(request).load(response_id)["response"]
