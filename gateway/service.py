"""Everything a running gateway holds: settings, policy pipeline, backend, watermark keys and detector."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.base import Backend
from gateway.errors import APIError
from gateway.pipeline import Pipeline
from gateway.policy_store import PolicyStore
from gateway.settings import Settings
from watermark.certificate import load_signer
from watermark.keys import KeyRing, load_keyring
from watermark.scheme import Scheme
from watermark.verifier import Verifier

log = logging.getLogger("greenlist")


def _build_backend(settings: Settings, scheme: Scheme) -> Backend:
    if settings.backend == "openai":
        from gateway.backends.openai import OpenAIBackend

        return OpenAIBackend(settings.upstream_base_url, settings.upstream_api_key, settings.upstream_model,
                             settings.upstream_timeout_s, settings.upstream_connect_timeout_s,
                             settings.upstream_retries, settings.upstream_retry_backoff_s,
                             settings.upstream_breaker_failures, settings.upstream_breaker_reset_s)
    from gateway.backends.local import LocalBackend

    backend = LocalBackend(settings.model, settings.home, scheme, settings.served_model_name, settings.torch_threads)
    backend.warm_up()
    return backend


@dataclass
class Gateway:
    """A started gateway (see :meth:`start`).

    Attributes:
        settings: The server settings.
        pipeline: The compiled policy.
        backend: Where completions come from.
        keyring: Watermark keys; ``keyring.active`` watermarks new text.
        scheme: Green-list scheme of the active key.
        verifier: Verifies texts against every non-retired key.
        store: Every live policy, routing and hot reload (:mod:`gateway.policy_store`);
            ``pipeline`` follows its default policy across reloads.
        audit: The audit log (:mod:`gateway.audit`), or None when disabled.
    """

    settings: Settings
    pipeline: Pipeline
    backend: Backend
    keyring: KeyRing
    scheme: Scheme
    verifier: Verifier
    store: PolicyStore | None = None
    audit: Any = None

    @classmethod
    def start(cls, settings: Settings) -> "Gateway":
        """Load the policy (refusing an invalid one), keys, guardrail models and the backend, warmed up.

        Raises:
            gateway.policy.PolicyError: for an invalid policy file.
            RuntimeError / OSError: when a model cannot be loaded.
        """
        store = PolicyStore(settings.policies_dir or Path(settings.policy).parent, settings.policy,
                            settings.policy_routing)
        store.load()  # every policy file validated, guardrails built; PolicyError names file and line
        pipeline = store.default
        keyring = load_keyring(settings.home)
        scheme = keyring.active.scheme(settings.watermark_gamma, settings.watermark_seeding_scheme)
        backend = _build_backend(settings, scheme)
        tokenizer = getattr(backend, "tokenizer", None)
        if tokenizer is None:
            from gateway.backends.loading import load_tokenizer

            tokenizer = load_tokenizer(settings.model, settings.home)
        name = "HuggingFaceTB/SmolLM2-135M-Instruct" if settings.model is None else settings.model
        verifier = Verifier(keyring, tokenizer, name, settings.watermark_gamma, settings.watermark_seeding_scheme,
                            settings.watermark_z_threshold, settings.watermark_min_tokens,
                            pipeline.policy.watermark.delta, load_signer(settings.home))
        log.info("policy %s@%s, backend %s, watermark key %s", pipeline.name, pipeline.version,
                 settings.backend, keyring.active.key_id)
        audit = None
        if settings.audit_enabled:
            from gateway.audit import AuditLog, default_audit_url

            audit = AuditLog(settings.audit_url or default_audit_url(settings.home))
        gw = cls(settings, pipeline, backend, keyring, scheme, verifier, store=store, audit=audit)
        store.on_swap(gw._follow_default)
        return gw

    def _follow_default(self, snapshot: Any) -> None:
        self.pipeline = snapshot.pipelines[snapshot.default]
        if self.verifier is not None:  # reported δ follows the live default policy
            self.verifier.delta = self.pipeline.policy.watermark.delta

    def resolve_policy(self, requested: str | None) -> Pipeline:
        """The pipeline for an anonymous request naming ``requested`` (None: the default policy).

        Requests with a tenant are matched by :func:`gateway.trust.resolve`.

        Raises:
            APIError: 403 / 404 / 503 from :meth:`PolicyStore.resolve`; 404 when a request names another
                policy on a gateway without a store.
        """
        if self.store is not None:
            return self.store.resolve(requested=requested).pipeline
        if requested not in (None, self.pipeline.name):
            raise APIError(404, f"unknown policy {requested!r}; this server runs {self.pipeline.name!r}",
                           param="policy", code="policy_not_found")
        return self.pipeline

    async def aclose(self) -> None:
        """Release the backend; flush and close the audit log."""
        await self.backend.aclose()
        if self.audit is not None:
            import asyncio

            await asyncio.to_thread(self.audit.close)
