"""The ``local`` backend: transformers generation on this machine, watermarked with a LogitsProcessor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from gateway.backends.base import Backend, Generation, GenerationRequest, GenerationStream, StreamDelta
from gateway.backends.constrained import GrammarLogitsProcessor, GrammarTokenizer, response_format_grammar
from gateway.backends.loading import load_causal_lm
from gateway.backends.localtools import (
    TOOL_FIELDS,
    call_grammar,
    parse_tool_calls,
    requested_tools,
    template_messages,
    template_supports_tools,
)
from gateway.errors import APIError
from watermark.processor import WatermarkLogitsProcessor
from watermark.scheme import Scheme


class _Cancelled(StoppingCriteria):
    """Stops generation as soon as ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        stop: torch.BoolTensor = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)  # type: ignore[assignment]
        return stop


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first occurrence of any stop string; return ``(text, found)``."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


SUPPORTED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "n",
        "stream",
        "stream_options",
        "user",
        "logprobs",
        "top_logprobs",
        "response_format",
    }
)
"""Request fields the local backend honours; any other field with a non-default value is refused by name
(:func:`gateway.backends.fields.reject_unsupported`; the table is in docs/api.md). ``tools``, ``tool_choice`` and
``parallel_tool_calls`` are added for a model whose chat template supports tools (:mod:`gateway.backends.localtools`;
the embedded SmolLM2-135M-Instruct's does not). ``response_format`` (``json_object``,
``json_schema``) is honoured by constrained decoding (:mod:`gateway.backends.constrained`). ``logprobs`` /
``top_logprobs`` (chat, not streamed) are the log-probabilities of the distribution each token was drawn from:
after the watermark's δ, the grammar's mask and the temperature."""


class LocalBackend(Backend):
    """Generates with a transformers causal LM on the CPU.

    Generations run one at a time (a 2-core CPU gains nothing from running two
    at once); requests wait their turn.

    Args:
        model: ``None`` for the embedded SmolLM2-135M-Instruct, else a hub id
            or local path of a causal LM.
        home: Greenlist data directory (model cache).
        scheme: Green-list scheme of the active watermark key.
        served_name: Name listed in ``/v1/models`` (default: the model's name).
        torch_threads: CPU threads for torch, or None for its default.
        loaded: ``(model, tokenizer, name)`` already loaded (e.g. the same weights with another chat template),
            instead of loading ``model``.
    """

    watermarks = True
    supported_fields = SUPPORTED_FIELDS

    def __init__(
        self,
        model: str | None,
        home: Any,
        scheme: Scheme,
        served_name: str | None = None,
        torch_threads: int | None = None,
        loaded: tuple[Any, Any, str] | None = None,
    ) -> None:
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.model, self.tokenizer, name = loaded or load_causal_lm(model, home)
        self.model_ids = [served_name or name]
        self.scheme = scheme
        self.grammar_tokenizer = GrammarTokenizer(self.tokenizer, int(self.model.config.vocab_size))
        if template_supports_tools(self.tokenizer):
            self.supported_fields = SUPPORTED_FIELDS | TOOL_FIELDS
        else:
            reason = f"the model {name!r} cannot call tools (its chat template has no tool support)"
            self.unsupported_reasons = dict.fromkeys(TOOL_FIELDS, reason)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Run one short generation so the first request does not pay for lazy initialisation."""
        request = GenerationRequest(
            model=self.model_ids[0],
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
            temperature=0.0,
            watermark_delta=2.0,
        )
        ids, kwargs = self._prepare(request, threading.Event())
        self._run(ids, kwargs, None)

    def validate(self, raw: dict[str, Any]) -> None:
        """Refuse malformed ``tools`` / ``tool_choice`` and a ``response_format`` that is malformed or whose schema
        cannot be compiled (HTTP 400 naming the field)."""
        self._constraint(raw)

    # --- preparation -----------------------------------------------------------
    def _tools(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        """The tools offered to the model and the tool choice (``([], "none")`` when the model gets no tools)."""
        return requested_tools(body) if "tools" in self.supported_fields else ([], "none")

    def _constraint(self, body: dict[str, Any]) -> GrammarLogitsProcessor | None:
        """The grammar mask ``response_format`` or a required tool call asks for, or None (APIError 400 for a bad
        one)."""
        tools, choice = self._tools(body)
        found = response_format_grammar(body.get("response_format"))
        if choice not in ("auto", "none"):
            if found is not None:
                raise APIError(
                    400,
                    "'response_format' with a required tool call: one constraint at a time on this backend",
                    param="response_format",
                    code="unsupported_parameter",
                )
            found = call_grammar(tools, choice), "tools"
        if found is None:
            return None
        grammar, param = found
        return GrammarLogitsProcessor(self.grammar_tokenizer.matcher(grammar, param), self.tokenizer.eos_token_id)

    def _input_ids(self, request: GenerationRequest) -> torch.Tensor:
        if request.messages is not None:
            tools, choice = self._tools(request.body or {})
            if "tools" in self.supported_fields:
                messages = template_messages(request.messages, _text)
            else:
                messages = [{"role": m["role"], "content": _text(m)} for m in request.messages]
            enc = self.tokenizer.apply_chat_template(
                messages,
                tools=[{"type": "function", "function": t} for t in tools] if choice != "none" else None,
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
            return enc["input_ids"]
        return self.tokenizer(request.prompt or "", return_tensors="pt")["input_ids"]

    def _prepare(self, request: GenerationRequest, cancel: threading.Event) -> tuple[torch.Tensor, dict[str, Any]]:
        ids = self._input_ids(request)
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "attention_mask": torch.ones_like(ids),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            "stopping_criteria": StoppingCriteriaList([_Cancelled(cancel)]),
        }
        if request.temperature > 0:
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if request.stop:
            kwargs.update(stop_strings=request.stop, tokenizer=self.tokenizer)
        processors = LogitsProcessorList()
        if request.watermark_delta is not None:
            processors.append(WatermarkLogitsProcessor(self.scheme, request.watermark_delta))
        constraint = self._constraint(request.body or {})
        if constraint is not None:
            processors.append(constraint)  # after the watermark: its δ cannot lift a token the grammar forbids
        if processors:
            kwargs["logits_processor"] = processors
        return ids, kwargs

    def _run(self, ids: torch.Tensor, kwargs: dict[str, Any], seed: int | None) -> torch.Tensor:
        new_ids, _ = self._run_scored(ids, kwargs, seed)
        return new_ids

    def _run_scored(
        self, ids: torch.Tensor, kwargs: dict[str, Any], seed: int | None, scores: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        if scores:
            kwargs = {**kwargs, "output_scores": True, "return_dict_in_generate": True}
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(ids, **kwargs)
        if scores:
            return out.sequences[0, ids.shape[1] :], out.scores
        return out[0, ids.shape[1] :], None

    def _logprobs(self, new_ids: torch.Tensor, scores: tuple[torch.Tensor, ...], top: int) -> dict[str, Any]:
        """OpenAI's ``logprobs`` object: per generated token its log-probability and the ``top`` most likely."""
        content = []
        for token, step in zip(new_ids.tolist(), scores, strict=False):
            logp = torch.log_softmax(step[0].float(), dim=-1)
            best = torch.topk(logp, top) if top else None
            content.append(
                {
                    **self._token_entry(token, float(logp[token])),
                    "top_logprobs": [
                        self._token_entry(int(i), float(v)) for v, i in zip(best.values, best.indices, strict=True)
                    ]
                    if best is not None
                    else [],
                }
            )
        return {"content": content, "refusal": None}

    def _token_entry(self, token: int, logprob: float) -> dict[str, Any]:
        text = self.tokenizer.decode([token])
        return {"token": text, "logprob": logprob if logprob > -1e30 else -9999.0, "bytes": list(text.encode())}

    def _finish(self, request: GenerationRequest, prompt_len: int, new_ids: torch.Tensor) -> Generation:
        text, stopped = cut_at_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), request.stop)
        ended = new_ids.numel() > 0 and int(new_ids[-1]) == self.tokenizer.eos_token_id
        length = not stopped and not ended and new_ids.numel() >= request.max_tokens
        calls = None
        if self._tools(request.body or {})[1] != "none":
            text, calls = parse_tool_calls(text)
        return Generation(
            text=text,
            tool_calls=calls,
            finish_reason="tool_calls" if calls else "length" if length else "stop",
            prompt_tokens=prompt_len,
            completion_tokens=int(new_ids.numel()),
            watermark_key_id=self.scheme.key_id if request.watermark_delta is not None else None,
        )

    # --- Backend ---------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate the whole completion in a worker thread."""
        ids, kwargs = self._prepare(request, threading.Event())
        body = request.body or {}
        wants = bool(body.get("logprobs"))
        if wants and request.messages is None:
            raise APIError(
                400,
                "'logprobs': supported by the local backend on chat completions only",
                param="logprobs",
                code="unsupported_parameter",
            )
        new_ids, scores = await asyncio.to_thread(self._run_scored, ids, kwargs, request.seed, wants)
        generation = self._finish(request, ids.shape[1], new_ids)
        if scores is not None:
            generation.logprobs = self._logprobs(new_ids, scores, int(body.get("top_logprobs") or 0))
        return generation

    async def stream(self, request: GenerationRequest) -> GenerationStream:
        """Start generation in a worker thread and stream its text.

        Raises:
            APIError: 400 for ``logprobs`` on a stream (supported without ``stream`` only).
        """
        if (request.body or {}).get("logprobs"):
            raise APIError(
                400,
                "'logprobs': supported by the local backend without stream only",
                param="logprobs",
                code="unsupported_parameter",
            )
        return _LocalStream(self, request)


class _LocalStream(GenerationStream):
    def __init__(self, backend: LocalBackend, request: GenerationRequest) -> None:
        self.backend, self.request = backend, request
        self.cancel = threading.Event()
        self.ids, kwargs = backend._prepare(request, self.cancel)
        self.streamer = TextIteratorStreamer(backend.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.new_ids: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, args=(kwargs,), daemon=True)
        self.thread.start()

    def _work(self, kwargs: dict[str, Any]) -> None:
        try:
            self.new_ids = self.backend._run(self.ids, {**kwargs, "streamer": self.streamer}, self.request.seed)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the consumer below
            self.error = exc
            self.streamer.end()

    async def _deltas(self) -> AsyncIterator[StreamDelta]:
        stop = self.request.stop
        hold = max((len(s) for s in stop), default=1) - 1  # chars that could start a stop string
        if self.backend._tools(self.request.body or {})[1] != "none":
            hold = 1 << 60  # any text may turn out to be a tool call: sent once parsed, at the end
        emitted, text = 0, ""
        iterator = iter(self.streamer)
        while (chunk := await asyncio.to_thread(next, iterator, None)) is not None:
            text += chunk
            cut, found = cut_at_stop(text, stop)
            safe = len(cut) if found else max(emitted, len(text) - hold)
            if safe > emitted:
                yield cut[emitted:safe] if found else text[emitted:safe]
                emitted = safe
            if found:
                self.cancel.set()
                break
        await asyncio.to_thread(self.thread.join)
        if self.error is not None:
            raise self.error
        assert self.new_ids is not None
        self.result = self.backend._finish(self.request, self.ids.shape[1], self.new_ids)
        if len(self.result.text) > emitted:
            yield self.result.text[emitted:]
        if self.result.tool_calls:
            yield {"tool_calls": [{"index": i, **call} for i, call in enumerate(self.result.tool_calls)]}

    async def aclose(self) -> None:
        self.cancel.set()
