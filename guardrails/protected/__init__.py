"""Protected-content guardrail: near-duplicate detection of registered prose and code.

Trust teams register corpora with ``greenlist corpus add NAME PATH... --kind
prose|code`` (:mod:`guardrails.protected.cli`); this guardrail loads every
corpus when it is constructed, notices later ``add``/``remove`` runs on disk
(at most one cheap version check per second, then a reload of the changed
corpus and an atomic swap), and checks texts against them with MinHash LSH plus
exact verification (:mod:`guardrails.protected.matcher`).

Policy entry (all fields optional)::

    - type: protected_content
      corpora: null            # null = every registered corpus
      threshold: null          # window containment that fires (null: corpus default, prose 0.3 / code 0.5)
      action: block            # block | redact | flag | cite
      apply_to_prompts: false
      reload: sync             # sync | background | off: pick up `greenlist corpus add/remove`
      reload_interval: 1.0     # seconds between version checks (0: every scan)
      overrides:
        lyrics: {threshold: 0.5, action: redact}
        licensed_code: {action: cite, apply_to_prompts: true}

Modules: ``shingling`` (normalisation, tokens, shingles), ``signatures``
(MinHash), ``lsh`` (banding stores), ``index`` (corpus store), ``matcher``
(windows, candidates, verification), ``cli`` (``greenlist corpus``).
"""

from __future__ import annotations

import logging
import threading
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

log = logging.getLogger(__name__)

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
            under ``home``, including corpora added while the gateway runs.
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
        reload: How corpora changed on disk after construction (``greenlist
            corpus add/remove``) are picked up: ``sync`` (default) — the first
            scan that notices the change loads the changed corpus before it
            checks the text, so the very next request after ``corpus add`` is
            checked against it (that one request waits for the load; others
            running meanwhile use the previous indexes); ``background`` — a
            thread loads it while scans continue on the previous indexes;
            ``off`` — never (the indexes of construction time are kept).
        reload_interval: Minimum seconds between two version checks (a check
            reads one tiny ``version`` file per corpus and lists the corpora
            directory); ``0`` checks on every scan.
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
    reload: Literal["sync", "background", "off"] = "sync"
    reload_interval: float = Field(1.0, ge=0.0)


class ProtectedContentGuardrail(Guardrail):
    """Blocks, redacts, flags or cites texts that reproduce a registered corpus.

    Indexes are loaded here; :meth:`scan` only reads them, so one instance is
    safe to share between threads. Corpora added, changed or removed later
    with ``greenlist corpus`` are noticed by :meth:`scan` through
    :func:`~guardrails.protected.index.corpus_version` (at most once per
    ``reload_interval``) and reloaded according to ``reload``; the new set of
    matchers replaces the old one in a single reference assignment, so a scan
    sees either the old or the new indexes, never a mix. A corpus that cannot
    be loaded (for example while an ``add`` is being written) keeps its
    previous index and is retried at the next check.

    Attributes:
        matchers: Current ``{corpus name: Matcher}``; replaced, never mutated.

    Raises:
        FileNotFoundError: when a corpus named in ``corpora`` or ``overrides``
            does not exist at construction (the message says how to create it).
    """

    Config = ProtectedContentConfig
    streaming = True

    def __init__(self, config: ProtectedContentConfig) -> None:
        super().__init__(config)
        from guardrails.protected.index import list_corpora

        names = config.corpora if config.corpora is not None else list_corpora(config.home)
        for name in config.overrides:
            if config.corpora is not None and name not in names:
                raise FileNotFoundError(f"override for corpus {name!r}, which is not in `corpora` {names}")
        self._versions: dict[str, str | None] = {}
        self._reload_lock = threading.Lock()
        self._reload_thread: threading.Thread | None = None
        self._next_check = self.clock.monotonic() + config.reload_interval
        self.matchers: dict[str, Any] = {n: self._load(n) for n in names}

    def _load(self, name: str) -> Any:
        """Open corpus ``name`` and build its matcher, recording the version read *before* loading."""
        from guardrails.protected.index import Corpus, corpus_version
        from guardrails.protected.matcher import Matcher

        cfg: ProtectedContentConfig = self.config  # type: ignore[assignment]
        version = corpus_version(name, cfg.home)
        matcher = Matcher(Corpus.open(name, cfg.home), cfg.window_stride)
        self._versions[name] = version
        return matcher

    def _changes(self) -> tuple[list[str], list[str]]:
        """``(changed_or_new, removed)`` corpus names compared with the loaded versions."""
        from guardrails.protected.index import corpus_version, list_corpora

        cfg: ProtectedContentConfig = self.config  # type: ignore[assignment]
        wanted = cfg.corpora if cfg.corpora is not None else list_corpora(cfg.home)
        changed, removed = [], [n for n in self.matchers if n not in wanted]
        for name in wanted:
            version = corpus_version(name, cfg.home)
            if version is None:
                if name in self.matchers:
                    removed.append(name)
            elif version != self._versions.get(name) or name not in self.matchers:
                changed.append(name)
        return changed, removed

    def _apply(self, changed: list[str], removed: list[str]) -> list[str]:
        """Load ``changed``, drop ``removed`` and swap in the new matcher dict; returns names swapped."""
        new = {n: m for n, m in self.matchers.items() if n not in removed}
        done = list(removed)
        for name in changed:
            try:
                new[name] = self._load(name)
                done.append(name)
            except Exception as exc:  # partially written corpus, concurrent remove: retry later
                log.warning(
                    "protected_content: could not reload corpus %r (%s); keeping the previous index "
                    "and retrying at the next check",
                    name,
                    exc,
                )
        for name in removed:
            self._versions.pop(name, None)
        self.matchers = new
        if done:
            log.info(
                "protected_content: reloaded corpora %s, removed %s", sorted(set(done) - set(removed)), sorted(removed)
            )
        return done

    def refresh(self) -> list[str]:
        """Check the corpora on disk now and reload what changed, in this thread.

        Waits for a background reload in progress first. Used by :meth:`scan`
        (``reload: sync``) and by callers that want the indexes current
        immediately (tests, an admin endpoint).

        Returns:
            Names of the corpora reloaded, added or removed (empty when
            nothing changed).
        """
        with self._reload_lock:
            changed, removed = self._changes()
            return self._apply(changed, removed) if changed or removed else []

    def wait_for_reload(self, timeout: float | None = None) -> bool:
        """Wait until a background reload started by :meth:`scan` has finished.

        Args:
            timeout: Seconds to wait at most (``None``: no limit).

        Returns:
            ``True`` when no reload is running any more.
        """
        thread = self._reload_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _maybe_reload(self) -> None:
        """At most once per ``reload_interval``: notice changed corpora and reload them (``reload`` mode)."""
        cfg: ProtectedContentConfig = self.config  # type: ignore[assignment]
        now = self.clock.monotonic()
        if cfg.reload == "off" or now < self._next_check:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another thread is checking or reloading; use the current indexes
        release = True
        try:
            self._next_check = now + cfg.reload_interval
            changed, removed = self._changes()
            if not changed and not removed:
                return
            if cfg.reload == "sync":
                self._apply(changed, removed)
                return

            def run() -> None:
                """Reload in the background, then release the lock taken by the scan."""
                try:
                    self._apply(changed, removed)
                finally:
                    self._reload_lock.release()

            self._reload_thread = threading.Thread(target=run, name="protected-content-reload", daemon=True)
            self._reload_thread.start()
            release = False
        except Exception as exc:  # never fail a scan because of the reload check
            log.warning("protected_content: corpus version check failed: %s", exc)
        finally:
            if release:
                self._reload_lock.release()

    def _settings(self, corpus: str, matcher: Any) -> tuple[float, str, bool]:
        cfg: ProtectedContentConfig = self.config  # type: ignore[assignment]
        o = cfg.overrides.get(corpus) or CorpusOverride()
        default = cfg.threshold if cfg.threshold is not None else matcher.corpus.params.threshold
        return (
            default if o.threshold is None else o.threshold,
            o.action or cfg.action,
            cfg.apply_to_prompts if o.apply_to_prompts is None else o.apply_to_prompts,
        )

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        """Check ``text`` against every applicable corpus.

        Args:
            text: Prompt or output text (a streamed prefix is fine).
            direction: ``input`` texts are checked only against corpora with
                ``apply_to_prompts``.

        First (at most once per ``reload_interval``) picks up corpora changed
        on disk, see ``reload``.

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
        self._maybe_reload()
        matchers = self.matchers  # one consistent snapshot for this scan
        score = 0.0
        fired: list[tuple[str, Any]] = []
        for name, matcher in matchers.items():
            threshold, action, prompts = self._settings(name, matcher)
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
        return GuardrailResult(
            name=self.name, score=score, decision=decision, action=action, details=details, sanitized_text=sanitized
        )


def redact(text: str, spans: list[tuple[int, int]], marker: str = REDACTION_MARKER) -> str:
    """Replace character spans of ``text`` by ``marker``.

    Args:
        text: The original text.
        spans: ``[(start, end), ...]`` character offsets (end exclusive); they
            may overlap or touch and are merged first.
        marker: Replacement for each merged span.

    Returns:
        ``text`` with each merged span replaced by one ``marker``.
    """
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
