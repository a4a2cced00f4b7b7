"""Everything a running gateway holds: settings, policy pipeline, backend, watermark keys and detector."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.backends.base import Backend
from gateway.errors import APIError
from gateway.pipeline import Pipeline
from gateway.policy import load_policy
from gateway.settings import Settings
from guardrails.normalize import normalize
from watermark.detector import WatermarkDetector
from watermark.keys import KeyRing, load_keyring
from watermark.scheme import GreenListScheme

log = logging.getLogger("greenlist")


def _build_backend(settings: Settings, scheme: GreenListScheme) -> Backend:
    if settings.backend == "openai":
        from gateway.backends.openai import OpenAIBackend

        return OpenAIBackend(settings.upstream_base_url, settings.upstream_api_key, settings.upstream_model,
                             settings.upstream_timeout_s)
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
        detector: z-test detector of the active key.
        tokenizer: Tokenizer the watermark is defined over.
        tokenizer_name: Its name, reported by the verify endpoint.
    """

    settings: Settings
    pipeline: Pipeline
    backend: Backend
    keyring: KeyRing
    scheme: GreenListScheme
    detector: WatermarkDetector
    tokenizer: Any
    tokenizer_name: str

    @classmethod
    def start(cls, settings: Settings) -> "Gateway":
        """Load the policy (refusing an invalid one), keys, guardrail models and the backend, warmed up.

        Raises:
            gateway.policy.PolicyError: for an invalid policy file.
            RuntimeError / OSError: when a model cannot be loaded.
        """
        pipeline = Pipeline(load_policy(settings.policy))
        keyring = load_keyring(settings.home)
        scheme = GreenListScheme(key=keyring.active.secret, key_id=keyring.active.key_id,
                                 gamma=settings.watermark_gamma, seeding_scheme=settings.watermark_seeding_scheme)
        backend = _build_backend(settings, scheme)
        if getattr(backend, "tokenizer", None) is not None:
            tokenizer = backend.tokenizer  # type: ignore[attr-defined]
        else:
            from gateway.backends.loading import load_tokenizer

            tokenizer = load_tokenizer(settings.model, settings.home)
        detector = WatermarkDetector(scheme, settings.watermark_z_threshold, settings.watermark_min_tokens)
        name = getattr(tokenizer, "name_or_path", "") or "unknown"
        if settings.model is None:
            name = "HuggingFaceTB/SmolLM2-135M-Instruct"
        log.info("policy %s@%s, backend %s, watermark key %s", pipeline.name, pipeline.version,
                 settings.backend, keyring.active.key_id)
        return cls(settings, pipeline, backend, keyring, scheme, detector, tokenizer, name)

    def resolve_policy(self, requested: str | None) -> Pipeline:
        """The pipeline for a request (only the server's policy for now).

        Raises:
            APIError: 404 when a request names another policy.
        """
        if requested not in (None, self.pipeline.name):
            raise APIError(404, f"unknown policy {requested!r}; this server runs {self.pipeline.name!r}",
                           param="policy", code="policy_not_found")
        return self.pipeline

    def verify(self, text: str) -> dict[str, Any]:
        """Detect the watermark in ``text`` (normalised: NFC, invisibles stripped, homoglyphs folded).

        Returns:
            The verify endpoint's JSON body.
        """
        ids = self.tokenizer(normalize(text, "NFC"), add_special_tokens=False)["input_ids"]
        detection = self.detector.detect(ids)
        return {
            **detection.to_dict(),
            "key_id": self.scheme.key_id,
            "scheme": {
                "gamma": self.scheme.gamma,
                "delta": self.pipeline.policy.watermark.delta,
                "seeding_scheme": self.scheme.seeding_scheme,
                "context_width": self.scheme.context_width,
                "tokenizer": self.tokenizer_name,
                "min_tokens": self.detector.min_tokens,
            },
        }

    async def aclose(self) -> None:
        """Release the backend."""
        await self.backend.aclose()
