"""Constrained decoding for the local backend: ``response_format`` (``json_object``, ``json_schema``) with llguidance.

llguidance (Microsoft's Low-level Guidance, a Rust Earley parser over a lexer, no Python dependencies) was picked by
measurement among xgrammar, outlines-core and lm-format-enforcer: lowest per-token overhead on the embedded model's
49,152-token vocabulary, handles strict JSON schemas and "any JSON object" (``benchmarks/bench_constrained.py``,
docs/benchmarks.md "Constrained decoding (response_format)").

At each decoding step :class:`GrammarLogitsProcessor` advances the grammar by the token sampled at the previous step
and sets the logits of every token the grammar does not allow next to ``-inf``. It runs **after** the watermark's
logits processor, so whatever δ the watermark adds to green tokens, a token outside the grammar cannot be sampled and
the output stays valid; once the grammar is complete only end-of-sequence is allowed.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from gateway.errors import APIError

# One layout for the JSON: `{"a": 1, "b": [2, 3]}`. With flexible whitespace a sampled (or watermarked: δ on green
# whitespace tokens) generation can spend its whole max_tokens on spaces and tabs between two keys.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def invalid_value(message: str, param: str) -> APIError:
    """The 400 ``invalid_value`` error naming ``param``."""
    return APIError(400, message, param=param, code="invalid_value")


def json_schema_grammar(schema: Any, param: str) -> str:
    """The llguidance grammar for JSON that validates against ``schema``.

    Args:
        schema: A JSON Schema (a dict).
        param: The request field it came from, named in errors (e.g. ``response_format.json_schema.schema``).

    Returns:
        The grammar, serialised for ``llguidance.LLMatcher``; the JSON it allows is laid out on one line,
        ``{"a": 1, "b": [2, 3]}`` (no free whitespace to waste tokens on).

    Raises:
        APIError: 400 when ``schema`` is not an object.
    """
    import llguidance

    if not isinstance(schema, dict):
        raise invalid_value(f"{param!r} must be a JSON Schema object, got {type(schema).__name__}", param)
    return str(llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_LAYOUT))  # type: ignore[arg-type]


def response_format_grammar(response_format: Any) -> tuple[str, str] | None:
    """The grammar a chat completion's ``response_format`` asks for (OpenAI's shapes), or None for plain text.

    Args:
        response_format: ``{"type": "text"}``, ``{"type": "json_object"}`` (any JSON object) or
            ``{"type": "json_schema", "json_schema": {"name", "schema", "strict", "description"}}`` (JSON valid
            against ``schema``; the output is constrained whether ``strict`` is true or not), or None.

    Returns:
        ``(grammar, param)``: the llguidance grammar and the field it came from (for errors that llguidance finds
        when it compiles the grammar), or None when no constraint applies.

    Raises:
        APIError: 400 ``invalid_value`` naming the field at fault (``response_format.type``,
            ``response_format.json_schema.name``, ``response_format.json_schema.schema``, ...).
    """
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise invalid_value('\'response_format\' must be an object such as {"type": "json_object"}', "response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_schema_grammar({"type": "object"}, "response_format"), "response_format"
    if kind != "json_schema":
        raise invalid_value(
            f"'response_format.type' must be 'text', 'json_object' or 'json_schema', got {kind!r}",
            "response_format.type",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise invalid_value(
            "'response_format.json_schema' must be an object with 'name' and 'schema'", "response_format.json_schema"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise invalid_value(
            "'response_format.json_schema.name' must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
            "response_format.json_schema.name",
        )
    if not isinstance(spec.get("strict", False), bool | None):
        raise invalid_value(
            "'response_format.json_schema.strict' must be a boolean", "response_format.json_schema.strict"
        )
    param = "response_format.json_schema.schema"
    return json_schema_grammar(spec.get("schema", {}), param), param


class GrammarTokenizer:
    """The llguidance view of a transformers fast tokenizer, built once on first use (~0.5 s) and then shared.

    Args:
        tokenizer: The generating model's transformers tokenizer (a fast one).
        vocab_size: Rows of the model's logits (may exceed ``len(tokenizer)``: padded embedding matrices).
    """

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self._built: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The ``llguidance.LLTokenizer`` (built on the first call)."""
        with self._lock:
            if self._built is None:
                import llguidance.hf

                self._built = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size)
            return self._built

    def matcher(self, grammar: str, param: str) -> Any:
        """A fresh ``llguidance.LLMatcher`` for ``grammar`` (one per generation: it holds the parse state).

        Raises:
            APIError: 400 ``invalid_value`` naming ``param`` when llguidance rejects the grammar (a schema it
                cannot compile: unknown ``type``, a look-around ``pattern``, a dangling ``$ref``, ...).
        """
        import llguidance

        matcher = llguidance.LLMatcher(self.get(), grammar, log_level=0)
        if matcher.is_error():
            raise invalid_value(f"{param!r} cannot be used for constrained decoding: {matcher.get_error()}", param)
        return matcher


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks every token the grammar does not allow next (batch of one sequence).

    Args:
        matcher: An ``llguidance.LLMatcher`` in its initial state (from :meth:`GrammarTokenizer.matcher`).
        eos_token_id: Allowed alone should the matcher ever enter an error state (it cannot, since every
            sampled token was allowed, but then generation ends instead of producing text outside the grammar).
    """

    def __init__(self, matcher: Any, eos_token_id: int) -> None:
        self.matcher, self.eos_token_id = matcher, eos_token_id
        self._start = -1
        self._bits: np.ndarray | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Advance by the token sampled last (none at the first step) and mask ``scores`` (``(1, vocab)``) in place."""
        if self._start < 0:
            self._start = input_ids.shape[1]
        elif input_ids.shape[1] > self._start:
            self.matcher.consume_token(int(input_ids[0, -1]))
        vocab = scores.shape[-1]
        if self._bits is None:
            self._bits = np.zeros((vocab + 31) // 32, dtype=np.int32)
        allowed = np.zeros(vocab, dtype=bool)
        if not self.matcher.is_error():
            self.matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
            allowed = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[:vocab].astype(bool)
        if not allowed.any():
            allowed[self.eos_token_id] = True
        scores[:, torch.from_numpy(~allowed)] = float("-inf")
        return scores
