"""A stub judge endpoint on a real loopback socket: answers ``/v1/completions``, ``/v1/chat/completions`` and
``/v1/moderations`` with whatever the test scripts, records every request, and can hang (for timeouts).

The listening socket is bound before the server thread starts, so clients can connect at once (the kernel
queues the connection until uvicorn accepts it): no waiting for start-up.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

HANG = object()
"""Return this from a reply function to make the stub never answer (until the server stops)."""

Reply = Callable[[str, dict[str, Any]], Any]


@dataclass
class Stub:
    """Scriptable judge. ``reply(path, body)`` returns a JSON-able object (HTTP 200), a ``(status, body)``
    pair, a ``str`` (200, text/plain), or :data:`HANG`.

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1``.
        requests: ``(path, json body, headers)`` of every request received, in order.
    """

    base_url: str = ""
    reply: Reply = field(default=lambda path, body: {})
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def paths(self) -> list[str]:
        """Paths of the requests received so far."""
        return [p for p, _, _ in self.requests]


def _app(stub: Stub) -> Starlette:
    async def handle(request: Request) -> Response:
        body = await request.json()
        path = request.url.path
        stub.requests.append((path, body, dict(request.headers)))
        out = stub.reply(path, body)
        if out is HANG:
            stub.stop, stub.loop = stub.stop or asyncio.Event(), asyncio.get_running_loop()
            await stub.stop.wait()
            return PlainTextResponse("late", status_code=200)
        if isinstance(out, tuple):
            status, payload = out
            return (
                JSONResponse(payload, status_code=status)
                if not isinstance(payload, str)
                else PlainTextResponse(payload, status_code=status)
            )
        if isinstance(out, str):
            return PlainTextResponse(out)
        return JSONResponse(out)

    paths = ("/v1/completions", "/v1/chat/completions", "/v1/moderations")
    return Starlette(routes=[Route(p, handle, methods=["POST"]) for p in paths])


def serve_stub() -> Iterator[Stub]:
    """Run a :class:`Stub` on 127.0.0.1 with a free port for the duration of the generator."""
    stub = Stub()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    stub.base_url = f"http://127.0.0.1:{port}/v1"
    config = uvicorn.Config(_app(stub), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        if stub.stop is not None and stub.loop is not None:
            stub.loop.call_soon_threadsafe(stub.stop.set)  # release hanging requests
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def refused_url() -> str:
    """A loopback URL nobody listens on (a port bound, then released)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


def completion(text: str, top: dict[str, float] | None = None) -> dict[str, Any]:
    """An OpenAI ``/completions`` response with ``text`` (and first-token ``top_logprobs`` when given)."""
    choice: dict[str, Any] = {
        "index": 0,
        "text": text,
        "finish_reason": "stop",
        "logprobs": {"tokens": [text], "top_logprobs": [top]} if top is not None else None,
    }
    return {"id": "cmpl-1", "object": "text_completion", "model": "judge", "choices": [choice]}


def chat(content: str) -> dict[str, Any]:
    """An OpenAI ``/chat/completions`` response whose message content is ``content``."""
    return {
        "id": "chat-1",
        "object": "chat.completion",
        "model": "judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }


def moderation(flags: dict[str, bool], scores: dict[str, float]) -> dict[str, Any]:
    """An OpenAI ``/moderations`` response with one result."""
    return {
        "id": "modr-1",
        "model": "omni-moderation-latest",
        "results": [{"flagged": any(flags.values()), "categories": flags, "category_scores": scores}],
    }
