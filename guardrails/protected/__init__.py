"""Protected-content guardrail: near-duplicate detection of registered prose and code.

Trust teams register corpora with ``greenlist corpus add NAME PATH... --kind
prose|code`` (:mod:`guardrails.protected.cli`); this guardrail loads every
corpus once when it is constructed and checks texts against them with MinHash
LSH plus exact verification (:mod:`guardrails.protected.matcher`).

Policy entry (all fields optional)::

    - type: protected_content
      corpora: null            # null = every registered corpus
      threshold: null          # window containment that fires (null: corpus default, prose 0.3 / code 0.5)
      action: block            # block | redact | flag | cite
      apply_to_prompts: false
      overrides:
        lyrics: {threshold: 0.5, action: redact}
        licensed_code: {action: cite, apply_to_prompts: true}

Modules: ``shingling`` (normalisation, tokens, shingles), ``signatures``
(MinHash), ``lsh`` (banding stores), ``index`` (corpus store), ``matcher``
(windows, candidates, verification), ``cli`` (``greenlist corpus``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardrails.base import (
    Decision,
    Direction,
    Guardrail,
    GuardrailConfig,
    GuardrailResult,
    action_decision,
    most_severe,
)

ProtectedAction = Literal["block", "redact", "flag", "cite", "allow"]
REDACTION_MARKER = "[REDACTED: protected content]"


class CorpusOverride(BaseModel):
    """Per-corpus settings; a field left ``None`` inherits the entry's value.

    Attributes:
        threshold: Window containment in [0, 1] at or above which this corpus fires.
        action: ``block``, ``redact`` (replace the matching spans), ``flag`` or
            ``cite`` (pass the text, name the source in ``details``).
        apply_to_prompts: Also check prompts (``direction: input``).
    """

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(None, ge=0.0, le=1.0)
    action: ProtectedAction | None = None
    apply_to_prompts: bool | None = None


class ProtectedContentConfig(GuardrailConfig):
    """Policy entry of the protected-content guardrail.

    Attributes:
        type: Always ``"protected_content"``.
        corpora: Corpus names to check; ``None`` = every corpus registered
            under ``home`` at construction time.
        threshold: Window containment that fires, for every corpus; ``None``
            uses each corpus' own default (0.3 for prose, 0.5 for code, chosen
            in ``benchmarks/bench_protected.py``; see ``docs/benchmarks.md``).
        action: Default action: ``block``, ``redact``, ``flag``, ``cite``.
        apply_to_prompts: Default for checking prompts as well as outputs.
        overrides: Per-corpus :class:`CorpusOverride` keyed by corpus name.
        home: Greenlist home directory holding ``corpora/``; ``None`` uses
            ``GREENLIST_HOME`` (``~/.greenlist``).
        window_stride: Tokens between query windows (``None``: half the
            corpus' passage stride).
        max_matches: At most this many matches listed in ``details``.
    """

    type: Literal["protected_content"] = "protected_content"
    threshold: float | None = Field(None, ge=0.0, le=1.0)  # type: ignore[assignment]
    action: ProtectedAction = "block"  # type: ignore[assignment]
    corpora: list[str] | None = None
    apply_to_prompts: bool = False
    overrides: dict[str, CorpusOverride] = Field(default_factory=dict)
    home: str | None = None
    window_stride: int | None = Field(None, ge=1)
    max_matches: int = Field(10, ge=1)


class ProtectedContentGuardrail(Guardrail):
    """Blocks, redacts, flags or cites texts that reproduce a registered corpus.

    Indexes are loaded once here; :meth:`scan` only reads them, so one instance
    is safe to share between threads. Corpora added later are picked up when
    the gateway (and so this guardrail) is rebuilt.

    Raises:
        FileNotFoundError: when a corpus named in ``corpora`` or ``overrides``
            does not exist (the message says how to create it).
    """

    Config = ProtectedContentConfig
    streaming = True

    def __init__(self, config: ProtectedContentConfig) -> None:
        super().__init__(config)
        from guardrails.protected.index import Corpus, list_corpora
        from guardrails.protected.matcher import Matcher

        names = config.corpora if config.corpora is not None else list_corpora(config.home)
        for name in config.overrides:
            if config.corpora is not None and name not in names:
                raise FileNotFoundError(f"override for corpus {name!r}, which is not in `corpora` {names}")
        self.matchers = {n: Matcher(Corpus.open(n, config.home), config.window_stride) for n in names}

    def _settings(self, corpus: str) -> tuple[float, str, bool]:
        cfg: ProtectedContentConfig = self.config  # type: ignore[assignment]
        o = cfg.overrides.get(corpus) or CorpusOverride()
        default = cfg.threshold if cfg.threshold is not None else self.matchers[corpus].corpus.params.threshold
        return (default if o.threshold is None else o.threshold,
                o.action or cfg.action,
                cfg.apply_to_prompts if o.apply_to_prompts is None else o.apply_to_prompts)

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Check ``text`` against every applicable corpus.

        Args:
            text: Prompt or output text (a streamed prefix is fine).
            direction: ``input`` texts are checked only against corpora with
                ``apply_to_prompts``.

        Returns:
            A result whose ``score`` is the best window containment seen,
            whose decision is the most severe action among the corpora that
            fired, and whose ``details`` are ``{"matches": [...], "citations":
            [...]}``; each match names the corpus, document, passage character
            offsets, similarity (containment), Jaccard and the query spans.
            For ``redact``, ``sanitized_text`` has each matching span replaced
            by ``[REDACTED: protected content]``.
        """
        cfg: ProtectedContentConfig = self.config  # type: ignore[assignment]
        score = 0.0
        fired: list[tuple[str, Any]] = []
        for name, matcher in self.matchers.items():
            threshold, action, prompts = self._settings(name)
            if direction is Direction.INPUT and not prompts:
                continue
            matches, best = matcher.match(text, threshold)
            score = max(score, best)
            fired.extend((action, m) for m in matches)
        if not fired:
            return GuardrailResult(name=self.name, score=score)
        fired.sort(key=lambda am: -am[1].similarity)
        decision = most_severe([action_decision(a) for a, _ in fired])
        action = max((a for a, _ in fired), key=lambda a: action_decision(a).severity)
        details: dict[str, Any] = {
            "matches": [{**m.to_dict(), "action": a} for a, m in fired[: cfg.max_matches]],
        }
        cites = sorted({f"{m.corpus}: {m.document}" for a, m in fired if a == "cite"})
        if cites:
            details["citations"] = cites
        sanitized = None
        if decision is Decision.REDACT:
            spans = [s for a, m in fired if a == "redact" for s in m.query_spans]
            sanitized = redact(text, spans)
        return GuardrailResult(name=self.name, score=score, decision=decision, action=action,
                               details=details, sanitized_text=sanitized)


def redact(text: str, spans: list[tuple[int, int]], marker: str = REDACTION_MARKER) -> str:
    """Replace the character ``spans`` (``[(start, end), ...]``, may overlap) of ``text`` by ``marker``."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, pos = [], 0
    for s, e in merged:
        out.append(text[pos:s])
        out.append(marker)
        pos = e
    out.append(text[pos:])
    return "".join(out)


__all__ = ["CorpusOverride", "ProtectedContentConfig", "ProtectedContentGuardrail", "REDACTION_MARKER", "redact"]
