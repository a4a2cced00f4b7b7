"""The ``openai`` backend: forwards to any OpenAI-compatible upstream (vLLM, TGI, Ollama, OpenAI) with httpx.

Text from an upstream Greenlist does not control is never watermarked; the
guardrails apply to it as to local output.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from gateway.backends.base import Backend, Generation, GenerationRequest, GenerationStream, StreamDelta
from gateway.backends.fields import upstream_body
from gateway.backends.resilience import RETRY_STATUSES, UpstreamBreaker, backoff_s
from gateway.backends.toolcalls import ToolCallAssembler
from gateway.errors import APIError
from watermark.keys import XARG_KEY_ID


class UpstreamError(APIError):
    """The upstream failed or answered with an error (mapped to HTTP 502, or its own 4xx)."""


def _upstream_error(status: int, body: str) -> UpstreamError:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body[:500] or f"HTTP {status}"
    code = status if 400 <= status < 500 and status not in (401, 403) else 502
    return UpstreamError(code, f"upstream error ({status}): {message}", type="upstream_error", code="upstream_error")


class OpenAIBackend(Backend):
    """Forwards generation to an OpenAI-compatible ``/v1`` API.

    Args:
        base_url: The upstream's ``.../v1`` URL.
        api_key: Bearer token for the upstream, or None.
        model: Model to ask the upstream for, or None to pass the client's.
        timeout_s: Read timeout in seconds.
        connect_timeout_s: Connect timeout in seconds.
        retries: Retries of a request that failed before any of its answer was
            used (see :mod:`gateway.backends.resilience`).
        retry_backoff_s: Base of the exponential backoff between retries.
        breaker_failures, breaker_reset_s: Circuit breaker threshold and open time.
        upstream_watermark: ``vllm-plugin``: the upstream runs Greenlist's vLLM logits processor
            (docs/vllm.md); requests name the active key id in ``vllm_xargs`` and the gateway confirms the
            watermark by verifying the returned text. ``none``: the upstream's text is not watermarked.

    Raises:
        ValueError: when ``base_url`` is missing (set ``GREENLIST_UPSTREAM_BASE_URL``).
    """

    watermarks = False
    remote = True

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        retries: int = 2,
        retry_backoff_s: float = 0.25,
        breaker_failures: int = 5,
        breaker_reset_s: float = 15.0,
        upstream_watermark: Literal["none", "vllm-plugin"] = "none",
    ) -> None:
        if not base_url:
            raise ValueError(
                "the openai backend needs an upstream: set GREENLIST_UPSTREAM_BASE_URL (e.g. http://host:8000/v1)"
            )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s)
        )
        self.retries, self.retry_backoff_s = retries, retry_backoff_s
        self.breaker: UpstreamBreaker = UpstreamBreaker(breaker_failures, breaker_reset_s)
        self.model = model
        self.model_ids = [model] if model else []
        if upstream_watermark == "vllm-plugin":
            self.watermarks, self.confirms_watermark = True, "verify"

    def _body(self, request: GenerationRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        path, body = self._plain_body(request, stream)
        if self.confirms_watermark == "verify" and request.watermark_key_id is not None:
            xargs = body.get("vllm_xargs")
            body["vllm_xargs"] = {
                **(xargs if isinstance(xargs, dict) else {}),  # the key id, never the key
                XARG_KEY_ID: request.watermark_key_id,
            }
        return path, body

    def _plain_body(self, request: GenerationRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        path = "/chat/completions" if request.messages is not None else "/completions"
        if request.body is not None:  # forward the client's body as received (gateway.backends.fields)
            return path, upstream_body(
                request.body,
                model=self.model or request.model,
                stream=stream,
                max_tokens=request.max_tokens,
                messages=request.messages,
            )
        body: dict[str, Any] = {
            "model": self.model or request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": stream,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = request.stop
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.messages is not None:
            return "/chat/completions", {**body, "messages": request.messages}
        return "/completions", {**body, "prompt": request.prompt or ""}

    async def generate(self, request: GenerationRequest) -> Generation:
        """POST the request upstream and return its first choice."""
        path, body = self._body(request, stream=False)
        response = await self._send(path, body, stream=False)
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"] if request.messages is not None else {"content": choice["text"]}
            usage = data.get("usage") or {}
            return Generation(
                text=message.get("content") or "",
                finish_reason=str(choice.get("finish_reason") or "stop"),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                tool_calls=message.get("tool_calls") or None,
                logprobs=choice.get("logprobs") or None,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamError(
                502, "upstream returned a malformed completion", type="upstream_error", code="upstream_malformed"
            ) from None

    async def stream(self, request: GenerationRequest) -> GenerationStream:
        """Open a streamed request upstream (errors before the first byte raise here)."""
        path, body = self._body(request, stream=True)
        response = await self._send(path, body, stream=True)
        return _UpstreamStream(response, chat=request.messages is not None, breaker=self.breaker)

    async def _send(self, path: str, body: dict[str, Any], stream: bool) -> httpx.Response:
        """POST upstream through the circuit breaker, retrying while nothing of the answer was used.

        Returns:
            A response with status < 400 (for ``stream=True`` its body is not read yet).

        Raises:
            UpstreamError: 502 unreachable, 504 timed out, or the upstream's mapped error.
            APIError: 503 ``upstream_circuit_open`` while the breaker is open.
        """
        attempt = 0
        while True:
            self.breaker.before()
            retry_after: str | None = None
            try:
                response = await self.client.send(self.client.build_request("POST", path, json=body), stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                self.breaker.failure()
                error = UpstreamError(
                    502,
                    f"upstream unreachable: {type(exc).__name__}",
                    type="upstream_error",
                    code="upstream_unavailable",
                )
                retryable = True
            except httpx.TimeoutException as exc:
                self.breaker.failure()
                raise UpstreamError(
                    504,
                    f"upstream timed out: {type(exc).__name__} (upstream_timeout_s)",
                    type="upstream_error",
                    code="upstream_timeout",
                ) from None
            except httpx.HTTPError as exc:
                self.breaker.failure()
                raise UpstreamError(
                    502, f"upstream failed: {type(exc).__name__}", type="upstream_error", code="upstream_unavailable"
                ) from None
            except BaseException:
                self.breaker.release_trial()  # cancelled (client left): no verdict on the upstream
                raise
            else:
                if response.status_code < 400:
                    self.breaker.success()
                    return response
                try:
                    text = (await response.aread()).decode("utf-8", "replace")
                except httpx.HTTPError:
                    text = ""
                finally:
                    await response.aclose()
                if response.status_code >= 500:
                    self.breaker.failure()
                else:
                    self.breaker.success()  # the upstream is up; the request was refused
                error = _upstream_error(response.status_code, text)
                retryable = response.status_code in RETRY_STATUSES
                retry_after = response.headers.get("retry-after")
            if not retryable or attempt >= self.retries:
                raise error
            await asyncio.sleep(backoff_s(attempt, self.retry_backoff_s, retry_after))
            attempt += 1

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


class _UpstreamStream(GenerationStream):
    def __init__(self, response: httpx.Response, chat: bool, breaker: UpstreamBreaker | None = None) -> None:
        self.response, self.chat, self.breaker = response, chat, breaker

    async def _deltas(self) -> AsyncIterator[StreamDelta]:
        text, finish, usage = "", "stop", dict[str, Any]()
        calls = ToolCallAssembler()
        try:
            async for line in self.response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                event = json.loads(payload)
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    fields = choice.get("delta") or {}
                    delta = fields.get("content") if self.chat else choice.get("text")
                    finish = choice.get("finish_reason") or finish
                    if delta:
                        text += delta
                        yield delta
                    if self.chat and fields.get("tool_calls"):
                        calls.add(fields["tool_calls"])
                        yield {"tool_calls": fields["tool_calls"]}
        except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:  # broken, or malformed events
            if self.breaker is not None and isinstance(exc, httpx.HTTPError):
                self.breaker.failure()
            timeout = isinstance(exc, httpx.TimeoutException)
            raise UpstreamError(
                504 if timeout else 502,
                f"upstream stream broke: {type(exc).__name__}",
                type="upstream_error",
                code="upstream_timeout" if timeout else "upstream_stream_error",
            ) from None
        finally:
            await self.response.aclose()
        self.result = Generation(
            text=text,
            finish_reason=str(finish),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            tool_calls=calls.result(),
        )

    async def aclose(self) -> None:
        await self.response.aclose()
