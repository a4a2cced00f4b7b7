"""Checking streamed output as it is generated: sentence by sentence (or token windows), then the whole text.

``unit: sentence`` (default): each time a sentence completes
(:func:`greenlist.sentences.complete_sentences`), the output guardrails that
support streaming scan it with up to two earlier sentences as context; a
sentence still open after ``4 * window_tokens`` chunks (a chunk is one decoded
piece of the stream: a token or a few) is scanned as it stands.
``unit: tokens``: every ``window_tokens`` chunks they scan the last
``window_tokens + overlap_tokens`` chunks.

In ``buffer`` mode text is released only after a check containing it passed
(so sentence by sentence); in ``stream-first`` mode it is released at once and
a blocking check stops the stream. When generation ends, all output guardrails
scan the whole text once more before the rest is released; guardrails that
cache per-sentence scores only score what the streaming checks did not. Every
check is recorded in :attr:`StreamGuard.checks`.
"""

from __future__ import annotations

from typing import Any

from gateway.policy.schema import StreamingPolicy
from gateway.serving.pipeline import Pipeline, Verdict
from greenlist.sentences import complete_sentences
from guardrails import Decision, Direction

CONTEXT_SENTENCES = 2  # earlier sentences scanned with each new one (windows of up to 3 sentences)


class StreamGuard:
    """Holds back and checks one streamed output.

    Args:
        pipeline: The compiled policy whose output guardrails run.
        policy: The policy's streaming settings.
        messages: The request's turns, for guardrails that read the conversation (final check only).
    """

    def __init__(
        self, pipeline: Pipeline, policy: StreamingPolicy, messages: list[dict[str, Any]] | None = None
    ) -> None:
        self.pipeline, self.policy, self.messages = pipeline, policy, messages or []
        self.text = ""
        self.ends: list[int] = []  # end offset of each chunk in self.text
        self.released = 0  # chars sent to the client
        self.last_check = 0  # chunks seen at the last window check
        self.hold = False  # a window asked for redaction: hold everything until the final check
        self.checks: list[dict[str, Any]] = []
        self.checked: list[tuple[int, int]] = []  # sentence mode: spans of the sentences checked so far
        self.pending = 0  # sentence mode: offset where the first unchecked sentence starts

    def _release(self, upto: int) -> str:
        out = self.text[self.released : upto] if upto > self.released else ""
        self.released = max(self.released, upto)
        return out

    async def feed(self, delta: str) -> tuple[str, Verdict | None]:
        """Take one chunk; return ``(text to send now, blocking verdict or None)``."""
        self.text += delta
        self.ends.append(len(self.text))
        out = self._release(len(self.text)) if self.policy.mode == "stream-first" else ""
        window = self._sentence_window() if self.policy.unit == "sentence" else self._token_window()
        if window is None:
            return out, None
        verdict = await self._check(*window)
        if verdict.decision is Decision.BLOCK:
            return out, verdict
        if verdict.decision is Decision.REDACT:
            self.hold = True
        if not self.hold:
            out += self._release(window[1])
        return out, None

    def _token_window(self) -> tuple[int, int] | None:
        """The last ``window_tokens + overlap_tokens`` chunks, every ``window_tokens`` chunks."""
        if len(self.ends) - self.last_check < self.policy.window_tokens:
            return None
        first = max(0, len(self.ends) - self.policy.window_tokens - self.policy.overlap_tokens)
        return (self.ends[first - 1] if first > 0 else 0), len(self.text)

    def _sentence_window(self) -> tuple[int, int] | None:
        """Newly completed sentences with up to :data:`CONTEXT_SENTENCES` earlier ones, or None."""
        spans, rest = complete_sentences(self.text[self.pending :])
        if spans:
            end = self.pending + spans[-1][1]
            self.checked += [(self.pending + a, self.pending + b) for a, b in spans]
            self.pending += rest
        elif len(self.ends) - self.last_check >= 4 * self.policy.window_tokens:
            end = len(self.text)  # a run-on sentence: check what there is, keep it open
        else:
            return None
        context = self.checked[-(len(spans) + CONTEXT_SENTENCES) :]  # the new sentences and two before them
        return (context[0][0] if context else self.pending), end

    async def _check(self, start: int, end: int) -> Verdict:
        self.last_check = len(self.ends)
        verdict = await self.pipeline.check(self.text[start:end], Direction.OUTPUT, window=(start, end))
        self.checks.append(_record(verdict))
        return verdict

    async def finish(self) -> tuple[str, Verdict]:
        """Check the whole text; return ``(remaining text to send, final verdict)``.

        A redaction that would change text already sent (``stream-first``) cannot
        be applied; the check records ``"retracted": false`` and nothing more is sent.
        """
        verdict = await self.pipeline.check(self.text, Direction.OUTPUT, messages=self.messages)
        record = _record(verdict)
        self.checks.append(record)
        if verdict.decision is Decision.BLOCK:
            return "", verdict
        sent = self.text[: self.released]
        if not verdict.text.startswith(sent):
            record["retracted"] = False
            return "", verdict
        self.text = verdict.text
        return self._release(len(self.text)), verdict

    def summary(self) -> dict[str, Any]:
        """What was checked, for the ``greenlist`` object."""
        return {
            "mode": self.policy.mode,
            "unit": self.policy.unit,
            "window_tokens": self.policy.window_tokens,
            "overlap_tokens": self.policy.overlap_tokens,
            "checks": self.checks,
            "released_chars": self.released,
        }


def _record(verdict: Verdict) -> dict[str, Any]:
    return {
        **verdict.scope,
        "decision": verdict.decision.value,
        "scores": {r.name: round(r.score, 6) for r in verdict.results},
    }
