"""The running gateway's state (:class:`Gateway`): settings, live policies, backend, keys, verifier, audit log.

Built once at start-up by :meth:`Gateway.start`; the API routes read it from ``app.state.gateway``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.base import Backend
from gateway.observability.audit import AuditLog
from gateway.policy.snapshot import PolicySnapshot
from gateway.policy.store import PolicyStore
from gateway.security.shared_keys import key_set_file, load_certificate_signer, load_watermark_keys
from gateway.serving.pipeline import Pipeline
from gateway.settings import Settings
from watermark.keys import KeyRing
from watermark.scheme import Scheme
from watermark.verifier import Verifier

log = logging.getLogger("greenlist")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


EMBEDDED_TOKENIZER_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


def build_verifier(
    settings: Settings, delta: float, tokenizer: Any = None, keyring: KeyRing | None = None, signer: Any = None
) -> Verifier:
    """The verifier of ``/v1/watermark/verify``: keys from ``settings.home``, the served model's tokenizer.

    One construction for the server, ``greenlist verify`` and ``greenlist scan``, so they give the same verdicts.

    Args:
        settings: Server settings (home, model, γ, seeding scheme, z threshold, minimum tokens).
        delta: δ of the default policy (reported in results only).
        tokenizer: The backend's tokenizer when it has one; None loads ``settings.model``'s
            (:func:`gateway.backends.loading.load_tokenizer`, no weights).
        keyring, signer: Already loaded keys (:mod:`gateway.security.shared_keys`); None loads them.

    Returns:
        A :class:`~watermark.verifier.Verifier` over every non-retired key, with the signer when one exists.

    Raises:
        OSError / ValueError: when the key file or the tokenizer cannot be read.
    """
    if tokenizer is None:
        from gateway.backends.loading import load_tokenizer

        tokenizer = load_tokenizer(settings.model, settings.home)
    name = EMBEDDED_TOKENIZER_NAME if settings.model is None else settings.model
    return Verifier(
        keyring or load_watermark_keys(settings),
        tokenizer,
        name,
        settings.watermark_gamma,
        settings.watermark_seeding_scheme,
        settings.watermark_z_threshold,
        settings.watermark_min_tokens,
        delta,
        signer or load_certificate_signer(settings),
    )


def _build_backend(settings: Settings, scheme: Scheme) -> Backend:
    if settings.backend == "openai":
        from gateway.backends.openai import OpenAIBackend

        return OpenAIBackend(
            settings.upstream_base_url,
            settings.upstream_api_key,
            settings.upstream_model,
            settings.upstream_timeout_s,
            settings.upstream_connect_timeout_s,
            settings.upstream_retries,
            settings.upstream_retry_backoff_s,
            settings.upstream_breaker_failures,
            settings.upstream_breaker_reset_s,
            settings.upstream_watermark,
        )
    from gateway.backends.local import LocalBackend

    backend = LocalBackend(settings.model, settings.home, scheme, settings.served_model_name, settings.torch_threads)
    backend.warm_up()
    return backend


@dataclass
class Gateway:
    """A started gateway (see :meth:`start`).

    Attributes:
        settings: The server settings.
        store: Every live policy, routing and hot reload (:mod:`gateway.policy.store`).
        pipeline: The default policy's compiled pipeline; follows the store across reloads.
        backend: Where completions come from.
        keyring: Watermark keys; ``keyring.active`` watermarks new text.
        scheme: Green-list scheme of the active key.
        verifier: Verifies texts against every non-retired key.
        audit: The audit log (:mod:`gateway.observability.audit`), or None when disabled.
    """

    settings: Settings
    store: PolicyStore
    pipeline: Pipeline
    backend: Backend
    keyring: KeyRing
    scheme: Scheme
    verifier: Verifier
    audit: AuditLog | None = None

    def __post_init__(self) -> None:
        self.store.on_swap(self._follow_default)

    @classmethod
    def start(cls, settings: Settings) -> Gateway:
        """Load the policy (refusing an invalid one), keys, guardrail models and the backend, warmed up.

        Raises:
            gateway.policy.schema.PolicyError: for an invalid policy file.
            gateway.security.shared_keys.SharedKeysError: one replica of several without shared keys.
            RuntimeError / OSError: when a model cannot be loaded.
        """
        store = PolicyStore(
            settings.policies_dir or Path(settings.policy).parent, settings.policy, settings.policy_routing
        )
        store.load()  # every policy file validated, guardrails built; PolicyError names file and line
        pipeline = store.default
        keyring = load_watermark_keys(settings)
        signer = load_certificate_signer(settings)
        scheme = keyring.active.scheme(settings.watermark_gamma, settings.watermark_seeding_scheme)
        backend = _build_backend(settings, scheme)
        verifier = build_verifier(settings, pipeline.policy.watermark.delta, backend.tokenizer, keyring, signer)
        log.info(
            "policy %s@%s, backend %s, watermark key %s",
            pipeline.name,
            pipeline.version,
            settings.backend,
            keyring.active.key_id,
        )
        audit = None
        if settings.audit_enabled:
            from gateway.observability.audit import default_audit_url

            audit = AuditLog(
                settings.audit_url or default_audit_url(settings.home),
                queue_size=settings.audit_queue_size,
                spill_dir=settings.audit_spill_dir or settings.home / "audit-spill",
            )
        return cls(settings, store, pipeline, backend, keyring, scheme, verifier, audit)

    def _follow_default(self, snapshot: PolicySnapshot) -> None:
        self.pipeline = snapshot.pipelines[snapshot.default]
        if self.verifier is not None:  # reported delta follows the live default policy
            self.verifier.delta = self.pipeline.policy.watermark.delta

    def start_watcher(self) -> asyncio.Task[None] | None:
        """Start the policy-file watcher task when ``settings.policy_watch`` is on (call inside the event loop).

        Returns:
            The task (owned by the caller's event loop; pass it to :meth:`drain`), or None when off.
        """
        if not self.settings.policy_watch:
            return None
        return asyncio.get_running_loop().create_task(self._watch(self.settings.policy_watch_interval_s))

    async def _watch(self, interval_s: float) -> None:
        """Policy files and the shared key set, polled together (rotation on a shared set reaches every replica)."""
        path = key_set_file(self.settings)
        if path is None:
            await self.store.watch(interval_s)
            return
        policies = asyncio.get_running_loop().create_task(self.store.watch(interval_s))
        try:
            seen = _mtime(path)
            while True:
                await self.store.clock.sleep(interval_s)
                now = _mtime(path)
                if now != seen:
                    seen = now
                    self.reload_keys()
        finally:
            policies.cancel()

    def reload_keys(self) -> bool:
        """Re-read the shared watermark key set; verification then tries its keys (an invalid file is ignored).

        Returns:
            True when the new key set was applied. The local backend keeps generating with the key it started
            with until restarted; verification accepts both (see ``greenlist watermark-keys rotate --no-activate``).
        """
        try:
            ring = load_watermark_keys(self.settings)
        except (OSError, ValueError) as exc:
            log.error("watermark key set not reloaded, the last good one stays: %s", exc)
            return False
        self.keyring = ring
        self.verifier.set_keyring(ring)
        log.info("watermark keys reloaded: active %s, %d keys", ring.active.key_id, len(ring.keys))
        return True

    async def drain(self, watcher: asyncio.Task[None] | None) -> None:
        """Stop ``watcher``, let running shadow checks finish and flush the audit log (nothing queued is lost)."""
        from gateway.observability.records import drain_shadow

        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await drain_shadow(10.0)
        if self.audit is not None:
            await asyncio.to_thread(self.audit.flush, 30.0)

    async def aclose(self) -> None:
        """Release the backend; flush and close the audit log."""
        await self.backend.aclose()
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)
