"""Which request fields a backend honours, forwards or rejects: no field is ever silently dropped.

* The ``openai`` backend forwards the client's body as received, minus what Greenlist owns
  (:data:`GREENLIST_OWNED`), so tools, ``response_format``, penalties, ``logit_bias``, ``metadata`` and fields
  OpenAI adds later reach the upstream unchanged (:func:`upstream_body`).
* A backend that declares ``supported_fields`` (the local model) honours exactly those; any other field sent
  with a non-default value is refused with HTTP 400 whose ``param`` names it (:func:`reject_unsupported`).

The table per backend is in ``docs/api.md``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from gateway.errors import APIError

GREENLIST_OWNED = frozenset({"greenlist"})
"""Request fields Greenlist consumes itself and never forwards."""

# Values that mean "the default" for a field, so sending them to a backend that cannot honour the field is harmless.
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False, 0),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logit_bias": ({},),
    "echo": (False,),
    "suffix": ("",),
    "best_of": (1,),
    "parallel_tool_calls": (True,),
    "tools": ([],),
    "tool_choice": ("none", "auto"),
    "metadata": ({},),
    "store": (False,),
    "response_format": ({"type": "text"},),
}


def _is_default(name: str, value: Any) -> bool:
    return value is None or any(value == d and type(value) is type(d) for d in _DEFAULTS.get(name, ()))


def reject_unsupported(
    raw: Mapping[str, Any], supported: Collection[str], reasons: Mapping[str, str] | None = None
) -> None:
    """Refuse a request that sets a field the backend cannot honour.

    Args:
        raw: The request body as the client sent it.
        supported: The fields the backend honours.
        reasons: Why a field is not supported, where the backend knows (e.g. "the model's chat template has
            no tool support"), used as the error message.

    Raises:
        APIError: 400 ``unsupported_parameter`` with ``param`` naming the first such field (in body order).
    """
    for name, value in raw.items():
        if name in supported or name in GREENLIST_OWNED or _is_default(name, value):
            continue
        reason = (reasons or {}).get(name) or "it is not supported by this server's backend"
        raise APIError(
            400,
            f"{name!r}: {reason}; remove it or use an upstream that supports it (see docs/api.md)",
            param=name,
            code="unsupported_parameter",
        )


def upstream_body(
    raw: Mapping[str, Any], *, model: str, stream: bool, max_tokens: int, messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The body to send to an OpenAI-compatible upstream: the client's own, minus what Greenlist owns.

    Args:
        raw: The request body as received.
        model: The model to ask the upstream for.
        stream: Whether to stream (``stream_options.include_usage`` is then turned on: the gateway reports usage).
        max_tokens: Added as ``max_tokens`` only when the client set neither ``max_tokens`` nor
            ``max_completion_tokens`` (the server's default).
        messages: The chat messages to send instead of the client's (input guardrails may have redacted them).

    Returns:
        A new dict; every other field is the client's value, unchanged.
    """
    body = {k: v for k, v in raw.items() if k not in GREENLIST_OWNED}
    body["model"] = model
    body["stream"] = stream
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body.pop("max_tokens", None)
        body["max_tokens"] = max_tokens
    if messages is not None:
        body["messages"] = messages
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    return body
