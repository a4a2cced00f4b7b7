"""Checking streamed output as it is generated: a sliding window, then the whole text.

Every ``window_tokens`` stream chunks (a chunk is one decoded piece of the
stream: a token or a few), the output guardrails that support streaming scan
the last ``window_tokens + overlap_tokens`` chunks. In ``buffer`` mode text is
released only after a window containing it passed; in ``stream-first`` mode it
is released at once and a blocking window stops the stream. When generation
ends, all output guardrails scan the whole text once more before the rest is
released. Every check is recorded in :attr:`StreamGuard.checks`.
"""

from __future__ import annotations

from typing import Any

from gateway.policy.schema import StreamingPolicy
from gateway.serving.pipeline import Pipeline, Verdict
from guardrails import Decision, Direction


class StreamGuard:
    """Holds back and checks one streamed output.

    Args:
        pipeline: The compiled policy whose output guardrails run.
        policy: The policy's streaming settings.
        messages: The request's turns, for guardrails that read the conversation (final check only).
    """

    def __init__(self, pipeline: Pipeline, policy: StreamingPolicy,
                 messages: list[dict[str, Any]] | None = None) -> None:
        self.pipeline, self.policy, self.messages = pipeline, policy, messages or []
        self.text = ""
        self.ends: list[int] = []  # end offset of each chunk in self.text
        self.released = 0  # chars sent to the client
        self.last_check = 0  # chunks seen at the last window check
        self.hold = False  # a window asked for redaction: hold everything until the final check
        self.checks: list[dict[str, Any]] = []

    def _release(self, upto: int) -> str:
        out = self.text[self.released:upto] if upto > self.released else ""
        self.released = max(self.released, upto)
        return out

    async def feed(self, delta: str) -> tuple[str, Verdict | None]:
        """Take one chunk; return ``(text to send now, blocking verdict or None)``."""
        self.text += delta
        self.ends.append(len(self.text))
        out = self._release(len(self.text)) if self.policy.mode == "stream-first" else ""
        if len(self.ends) - self.last_check < self.policy.window_tokens:
            return out, None
        verdict = await self._check_window()
        if verdict.decision is Decision.BLOCK:
            return out, verdict
        if verdict.decision is Decision.REDACT:
            self.hold = True
        if not self.hold:
            out += self._release(len(self.text))
        return out, None

    async def _check_window(self) -> Verdict:
        self.last_check = len(self.ends)
        first = max(0, len(self.ends) - self.policy.window_tokens - self.policy.overlap_tokens)
        start = self.ends[first - 1] if first > 0 else 0
        verdict = await self.pipeline.check(self.text[start:], Direction.OUTPUT, window=(start, len(self.text)))
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
            "window_tokens": self.policy.window_tokens,
            "overlap_tokens": self.policy.overlap_tokens,
            "checks": self.checks,
            "released_chars": self.released,
        }


def _record(verdict: Verdict) -> dict[str, Any]:
    return {**verdict.scope, "decision": verdict.decision.value,
            "scores": {r.name: round(r.score, 6) for r in verdict.results}}
