"""Request bodies, in OpenAI's shapes where OpenAI has them.

Chat and text completion bodies keep every field the client sent (``extra="allow"``): the ``openai`` backend
forwards them upstream as received (:mod:`gateway.backends.fields`), the local backend rejects by name the ones
it cannot honour. Nothing is silently dropped. ``null`` means "default" wherever OpenAI says so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    # strict: a JSON value of the wrong type is refused (400) as the OpenAPI schema says, never coerced ("1" -> 1)
    model_config = ConfigDict(extra="ignore", strict=True)


class GreenlistOptions(BaseModel):
    """The optional ``greenlist`` field of a request body."""

    model_config = ConfigDict(extra="forbid", strict=True)
    policy: str | None = Field(None, description="Policy to apply, where the API key allows it")


class StreamOptions(BaseModel):
    """OpenAI ``stream_options``."""

    model_config = ConfigDict(strict=True)
    include_usage: bool = False


class ChatMessage(BaseModel):
    """One chat message; ``content`` is a string or a list of text parts.

    Assistant turns may carry ``tool_calls``; tool turns carry the ``tool_call_id`` they answer. Other fields
    (``name``, ``refusal``, ...) are kept and forwarded.
    """

    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text (text parts joined by newlines)."""
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class _Sampling(_Request):
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="null or absent: 1.0")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="null or absent: 1.0")
    seed: int | None = Field(None, ge=-(2**53), le=2**53)
    stop: str | list[str] | None = None
    n: int | None = 1
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    greenlist: GreenlistOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("only n=1 is supported; send several requests for several choices")
        return n

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return [s for s in stops if s]

    def stops(self) -> list[str]:
        """The validated stop sequences (a list after validation, whatever the client sent)."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def sampling(self) -> tuple[float, float]:
        """``(temperature, top_p)`` with OpenAI's defaults (1.0) for null or absent values."""
        return (1.0 if self.temperature is None else self.temperature, 1.0 if self.top_p is None else self.top_p)


class ChatCompletionRequest(_Sampling):
    """Body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class CompletionRequest(_Sampling):
    """Body of ``POST /v1/completions`` (one prompt string)."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str:
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise ValueError("send exactly one prompt per request")
            return prompt[0]
        return prompt

    def prompt_text(self) -> str:
        """The one validated prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class ModerationRequest(_Request):
    """Body of ``POST /v1/moderations``."""

    input: str | Annotated[list[str], Field(min_length=1)]
    model: str | None = None

    def inputs(self) -> list[str]:
        """The validated inputs, always a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)

    @field_validator("input")
    @classmethod
    def _inputs(cls, value: str | list[str]) -> list[str]:
        values = [value] if isinstance(value, str) else value
        if not values:
            raise ValueError("input must be a string or a non-empty list of strings")
        return values


class VerifyRequest(_Request):
    """Body of ``POST /v1/watermark/verify``."""

    text: str = Field(min_length=1)
    certificate: bool = Field(False, description="add an Ed25519-signed certificate of the result")
    windowed: bool = Field(False, description="add WinMax windowed detection and watermarked spans")
    detail: bool = Field(False, description="add per-token colours (needs the verify:detail scope when auth is on)")


class CheckRequest(_Request):
    """Body of ``POST /v1/guardrails/check``."""

    text: str
    direction: Literal["input", "output"] = "output"
    policy: str | None = None


class ResponsesRequest(_Request):
    """Body of ``POST /v1/responses`` (OpenAI Responses API; translated to a chat completion).

    Fields not listed are kept: forwarded where the chat completion has them, refused by name otherwise
    (:mod:`gateway.serving.responses`).
    """

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = Field(None, description="keep the response for previous_response_id and GET (default true)")
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_output_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    text: dict[str, Any] | None = None
    user: str | None = None
    greenlist: GreenlistOptions | None = None


class AnthropicMessage(BaseModel):
    """One Messages API turn: ``content`` a string or a list of blocks (``text``, ``tool_use``, ``tool_result``)."""

    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(_Request):
    """Body of ``POST /v1/messages`` (Anthropic Messages API; translated to a chat completion)."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    metadata: dict[str, Any] | None = None
    greenlist: GreenlistOptions | None = None
