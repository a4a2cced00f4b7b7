"""What every backend takes and gives: one generation request, one result, one stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from greenlist.breaker import CircuitBreaker


@dataclass
class GenerationRequest:
    """A normalised chat or text completion request.

    Attributes:
        model: Model name the client asked for.
        messages: Chat messages (``[{"role", "content"}]``) or None for a
            text completion.
        prompt: Prompt text for a text completion, else None.
        max_tokens: Most new tokens to generate.
        temperature: Sampling temperature (0 means greedy).
        top_p: Nucleus sampling mass in (0, 1].
        seed: Seed for reproducible sampling, or None.
        stop: Strings that end generation (not included in the output).
        watermark_delta: δ to apply, or None for no watermark.
        watermark_key_id: Id of the key to watermark with (the active key), named to an upstream that applies
            the watermark itself (the vLLM plugin); None for no watermark.
        body: The client's request body as received (Greenlist-owned fields included; see
            :mod:`gateway.backends.fields`), or None for an internal request. The ``openai`` backend forwards it;
            the local backend reads the fields it supports (``tools``, ``response_format``, ``logprobs``) from it.
    """

    model: str
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    watermark_delta: float | None = None
    watermark_key_id: str | None = None
    body: dict[str, Any] | None = None


@dataclass
class Generation:
    """A finished generation.

    Attributes:
        text: Generated text (stop strings removed).
        finish_reason: ``stop`` (end of turn or stop string), ``length`` or ``tool_calls``; an upstream's own
            value passes through unchanged.
        prompt_tokens, completion_tokens: Token counts for ``usage``.
        watermark_key_id: Id of the key the text was watermarked with, or None
            when no watermark was applied.
        watermark_note: Why a requested watermark is not confirmed (an upstream's text that did not verify).
        tool_calls: The tool calls in OpenAI's shape (``[{"id", "type": "function", "function": {"name",
            "arguments"}}]``), or None.
        logprobs: The choice's ``logprobs`` object in OpenAI's shape, or None.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    watermark_key_id: str | None = None
    watermark_note: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: dict[str, Any] | None = None


StreamDelta = str | dict[str, Any]
"""One item of a :class:`GenerationStream`: a text delta, or a dict of other chat delta fields
(``{"tool_calls": [...]}`` in OpenAI's streamed shape, passed through unchanged)."""


class GenerationStream(ABC):
    """Async iterator of deltas (:data:`StreamDelta`); ``result`` is set once it is exhausted.

    ``aclose()`` cancels the generation (client disconnected, or a guardrail
    stopped the stream) and frees the backend for the next request.
    """

    result: Generation | None = None

    def __aiter__(self) -> AsyncIterator[StreamDelta]:
        return self._deltas()

    @abstractmethod
    def _deltas(self) -> AsyncIterator[StreamDelta]:
        """Yield deltas; set ``self.result`` at the end."""

    @abstractmethod
    async def aclose(self) -> None:
        """Cancel the generation if it is still running."""


class Backend(ABC):
    """A source of completions: a local model or an upstream API.

    Attributes:
        watermarks: Whether this backend can apply the Greenlist watermark.
        model_ids: Model names served, for ``/v1/models``.
        tokenizer: The generating model's tokenizer (a transformers tokenizer), or None when the backend
            has none of its own (an upstream API); the gateway then loads the configured one for watermark
            verification and prompt-token limits.
        breaker: The circuit breaker guarding a remote upstream, or None for a local model.
        remote: Whether generation runs elsewhere (an upstream API), so it can overlap the input guardrails
            (a policy's ``input.mode: during_call``) without competing with them for this machine's CPU.
        supported_fields: The request fields this backend honours (others are refused by name), or None for a
            backend that forwards the whole body (:mod:`gateway.backends.fields`).
        unsupported_reasons: Why some fields are refused (the error message names the reason).
        confirms_watermark: ``applied`` when the backend applies the watermark itself (the local model),
            ``verify`` when an upstream applies it (the vLLM plugin) and the gateway confirms it by verifying
            the returned text.
    """

    supported_fields: frozenset[str] | None = None
    unsupported_reasons: dict[str, str] = {}
    watermarks: bool = False
    model_ids: list[str] = []
    tokenizer: Any = None
    breaker: CircuitBreaker | None = None
    remote: bool = False
    confirms_watermark: Literal["applied", "verify"] = "applied"

    def validate(self, raw: dict[str, Any]) -> None:  # noqa: B027 - an optional hook: nothing to check by default
        """Refuse a request body this backend cannot serve, before any guardrail runs (the local model checks
        ``response_format`` and ``tools`` here).

        Raises:
            APIError: 400 naming the field at fault.
        """

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` reports about this backend: its circuit state when it has a breaker."""
        return {"circuit": self.breaker.state} if self.breaker is not None else {}

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate a whole completion."""

    @abstractmethod
    async def stream(self, request: GenerationRequest) -> GenerationStream:
        """Start a streamed completion."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook: nothing to release by default
        """Release resources (connections, threads)."""
