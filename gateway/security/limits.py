"""Request limits: body size, prompt tokens, text length, concurrent generations.

Every limit is a setting (see :class:`gateway.settings.Settings`) and every
refusal is an OpenAI-shaped error whose message names the setting:

=============================  ======  ==============================
limit                          status  ``code``
=============================  ======  ==============================
``max_request_bytes``          413     ``request_too_large``
``max_prompt_tokens``          400     ``context_length_exceeded``
``max_new_tokens_limit``       400     ``max_tokens_limit``
``max_text_chars``             400     ``text_too_long``
``max_moderation_inputs``      400     ``too_many_inputs``
``max_concurrent_generations`` 429     ``too_many_concurrent_generations`` (+ ``Retry-After``)
``max_concurrent_upstream``    429     ``too_many_concurrent_generations`` (+ ``Retry-After``)
=============================  ======  ==============================

The local model gets ``max_concurrent_generations`` (default 2: it shares this machine's CPU or GPU); an
``openai`` upstream (vLLM batches dozens of requests) gets ``max_concurrent_upstream`` (default 64), see
:func:`limiter_for`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import APIError
from gateway.security.auth import _send_error
from greenlist.normalize import replace_surrogates

log = logging.getLogger("greenlist.limits")


class BodySizeLimitMiddleware:
    """ASGI middleware: refuse request bodies above ``max_bytes`` with 413 before the app reads them.

    A ``Content-Length`` above the limit is refused without reading; a chunked
    body is read up to the limit and then refused, or replayed to the app.

    Args:
        app: The wrapped ASGI app.
        max_bytes: Largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _error(self, size: int | None) -> APIError:
        got = f"{size} bytes" if size is not None else "more"
        return APIError(
            413, f"request body too large: {got}, limit max_request_bytes={self.max_bytes}", code="request_too_large"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            await _send_error(send, self._error(declared), scope)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, self._error(None), scope)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = _clean_surrogates(b"".join(chunks))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _clean_surrogates(body: bytes) -> bytes:
    """Replace lone surrogate escapes (``"\\ud800"``) in a JSON body by U+FFFD; other bodies are returned as they are.

    JSON may carry lone UTF-16 surrogates that no tokenizer accepts; found by
    fuzzing. Only bodies containing a ``\\ud8..\\udf`` escape are re-parsed.
    """
    lowered = body.lower()
    if (
        b"\\ud8" not in lowered
        and b"\\ud9" not in lowered
        and b"\\uda" not in lowered
        and b"\\udb" not in lowered
        and b"\\udc" not in lowered
        and b"\\udd" not in lowered
        and b"\\ude" not in lowered
        and b"\\udf" not in lowered
    ):
        return body
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body  # not JSON: the app's own validation answers

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return replace_surrogates(value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {replace_surrogates(k): fix(v) for k, v in value.items()}
        return value

    try:
        return json.dumps(fix(data), ensure_ascii=False).encode("utf-8")
    except RecursionError:
        return body


class GenerationLimiter:
    """Admits at most ``capacity`` generations at once; others wait in a bounded queue.

    A request waits at most ``max_wait_s``; when ``max_queue`` requests are
    already waiting, or the wait runs out, it gets HTTP 429 with a
    ``Retry-After`` estimated from recent generation times.

    Args:
        capacity: Generations running at once (``max_concurrent_generations``).
        max_queue: Requests allowed to wait (``generation_queue_size``).
        max_wait_s: Longest wait (``generation_queue_timeout_s``).
        setting: The setting that sets ``capacity``, named in refusals.
    """

    def __init__(
        self, capacity: int, max_queue: int, max_wait_s: float, setting: str = "max_concurrent_generations"
    ) -> None:
        self.capacity, self.max_queue, self.max_wait_s, self.setting = capacity, max_queue, max_wait_s, setting
        self._sem: asyncio.Semaphore | None = None
        self.active = 0
        self.waiting = 0
        self.rejected = 0
        self._mean_s = 5.0  # running mean of slot hold time, for Retry-After

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:  # created lazily, inside the server's event loop
            self._sem = asyncio.Semaphore(self.capacity)
        return self._sem

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue ahead divided by capacity, times mean hold time."""
        ahead = self.waiting + self.active
        return max(1, min(120, math.ceil(self._mean_s * max(1, ahead) / self.capacity)))

    def _refuse(self, why: str) -> APIError:
        self.rejected += 1
        retry = self.retry_after()
        return APIError(
            429,
            f"too many concurrent generations: {why} ({self.setting}="
            f"{self.capacity}, generation_queue_size={self.max_queue}, generation_queue_timeout_s="
            f"{self.max_wait_s:g}); retry after {retry} s",
            type="rate_limit_error",
            code="too_many_concurrent_generations",
            headers={"Retry-After": str(retry)},
        )

    async def acquire(self) -> Slot:
        """Wait for a slot.

        Raises:
            APIError: 429 when the queue is full or the wait times out.
        """
        sem = self._semaphore()
        if sem.locked() and self.waiting >= self.max_queue:
            raise self._refuse(f"{self.waiting} requests already waiting")
        self.waiting += 1
        try:
            await asyncio.wait_for(sem.acquire(), timeout=self.max_wait_s)
        except TimeoutError:
            raise self._refuse(f"no slot within {self.max_wait_s:g} s") from None
        finally:
            self.waiting -= 1
        self.active += 1
        return Slot(self)

    def _release(self, held_s: float) -> None:
        self.active -= 1
        self._mean_s = 0.8 * self._mean_s + 0.2 * held_s
        self._semaphore().release()


def limiter_for(
    backend: str, local_capacity: int, upstream_capacity: int, max_queue: int, max_wait_s: float
) -> GenerationLimiter:
    """The generation limiter of a backend: ``local_capacity`` for ``local``, ``upstream_capacity`` otherwise.

    Args:
        backend: ``local`` or ``openai`` (the ``backend`` setting).
        local_capacity: ``max_concurrent_generations``.
        upstream_capacity: ``max_concurrent_upstream``.
        max_queue, max_wait_s: ``generation_queue_size``, ``generation_queue_timeout_s``.
    """
    if backend == "local":
        return GenerationLimiter(local_capacity, max_queue, max_wait_s)
    return GenerationLimiter(upstream_capacity, max_queue, max_wait_s, setting="max_concurrent_upstream")


class Slot:
    """One admitted generation; :meth:`release` (idempotent) frees it."""

    def __init__(self, limiter: GenerationLimiter) -> None:
        self.limiter, self.start, self.released = limiter, time.monotonic(), False

    def release(self) -> None:
        """Free the slot (safe to call more than once)."""
        if not self.released:
            self.released = True
            self.limiter._release(time.monotonic() - self.start)


def check_text_length(texts: list[str] | str, max_chars: int, param: str) -> None:
    """Refuse texts longer than ``max_chars`` characters (``max_text_chars``).

    Raises:
        APIError: 400 ``text_too_long``.
    """
    for i, text in enumerate([texts] if isinstance(texts, str) else texts):
        if len(text) > max_chars:
            where = param if isinstance(texts, str) else f"{param}[{i}]"
            raise APIError(
                400,
                f"{where} is {len(text)} characters long, above the limit max_text_chars={max_chars}",
                param=where,
                code="text_too_long",
            )


def check_moderation_inputs(inputs: list[str], max_inputs: int) -> None:
    """Refuse more than ``max_inputs`` strings in one moderation request (``max_moderation_inputs``).

    Raises:
        APIError: 400 ``too_many_inputs``.
    """
    if len(inputs) > max_inputs:
        raise APIError(
            400,
            f"{len(inputs)} inputs in one request, above the limit max_moderation_inputs={max_inputs}",
            param="input",
            code="too_many_inputs",
        )


def count_tokens(tokenizer: Any, text: str) -> int:
    """Number of tokens of ``text`` (lone surrogates replaced so any tokenizer accepts it)."""
    clean = text.encode("utf-8", "replace").decode("utf-8")
    return len(tokenizer(clean, add_special_tokens=False)["input_ids"])


async def check_prompt_tokens(tokenizer: Any, text: str, max_tokens: int, param: str) -> int:
    """Refuse a prompt of more than ``max_tokens`` tokens (``max_prompt_tokens``); return its count.

    The count is of the prompt text (chat messages joined), without the chat
    template's few framing tokens. Tokenising runs in a worker thread.

    Raises:
        APIError: 400 ``context_length_exceeded``.
    """
    if len(text) <= max_tokens // 4:  # no tokenizer makes more than 4 tokens of one UTF-8 character
        return 0
    n = await asyncio.to_thread(count_tokens, tokenizer, text)
    if n > max_tokens:
        raise APIError(
            400,
            f"the prompt has {n} tokens, above the limit max_prompt_tokens={max_tokens}",
            param=param,
            code="context_length_exceeded",
        )
    return n


class GuardedStreamingResponse(StreamingResponse):
    """A streaming response that always cleans up, whatever ends it.

    Starlette cancels the body iterator when the client disconnects; this
    subclass then closes the iterator explicitly and runs ``on_close``
    callbacks (cancel the backend stream, free the generation slot) under a
    shield, so no generation is orphaned even when the iterator never started.

    Args:
        content: The async iterator of SSE chunks.
        on_close: Callbacks run exactly once when the response ends.
        **kwargs: As for :class:`StreamingResponse`.
    """

    def __init__(
        self,
        content: AsyncIterator[str],
        *,
        on_close: list[Callable[[], Awaitable[None] | None]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self.on_close = list(on_close or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then close the iterator and run the callbacks (shielded from cancellation)."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:  # noqa: BLE001 - cleanup must go on
                        log.exception("closing a response stream failed")
                for callback in self.on_close:
                    try:
                        result = callback()
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:  # noqa: BLE001
                        log.exception("stream cleanup callback failed")


def stream_error(exc: BaseException) -> dict[str, Any]:
    """The OpenAI-style ``{"error": ...}`` object for a failure after streaming started."""
    if isinstance(exc, APIError):
        err = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    else:
        err = {
            "message": "internal error while streaming; it has been logged",
            "type": "server_error",
            "param": None,
            "code": "stream_error",
        }
    return {"error": err}


def sse_error(exc: BaseException) -> str:
    """An OpenAI-style ``data: {"error": ...}`` SSE event for a failure after streaming started."""
    return f"data: {json.dumps(stream_error(exc))}\n\n"
