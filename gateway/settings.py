"""Server settings: command-line flags > ``GREENLIST_*`` environment variables > config file > defaults.

The config file is YAML, named by ``GREENLIST_CONFIG`` (or ``greenlist serve
--config``); its keys are the field names below. Every field can also be set
as ``GREENLIST_<FIELD>`` (upper case), e.g. ``GREENLIST_BACKEND=openai``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.policy.schema import DEFAULT_POLICY_PATH
from greenlist.home import greenlist_home


class Settings(BaseSettings):
    """Greenlist server settings.

    Attributes:
        host, port: Where ``greenlist serve`` listens (default 127.0.0.1:8000).
        policy: Policy file applied to every request.
        backend: ``local`` (transformers on this machine) or ``openai``
            (forward to an OpenAI-compatible upstream).
        model: For ``local``: ``None`` for the embedded SmolLM2-135M-Instruct,
            else a Hugging Face hub id or a local directory of a causal LM.
        served_model_name: Model name listed by ``/v1/models`` and accepted in
            requests (``None``: ``smollm2-135m-instruct`` or the model's name).
        upstream_base_url, upstream_api_key, upstream_model: The ``openai``
            backend's upstream (``.../v1``), its key and the model to ask for
            (``None``: the request's ``model``).
        upstream_timeout_s: Read timeout for the upstream, seconds.
        watermark_gamma: γ, green-list fraction (detection must use the value
            generation used).
        watermark_seeding_scheme: ``selfhash`` (default), ``lefthash`` or ``robust`` (Unigram-Watermark: most
            robust to edits, easier to estimate from many outputs; docs/watermark.md).
        watermark_z_threshold: z at or above which a text is called watermarked.
        watermark_min_tokens: Fewer scored tokens than this gives ``too_short``.
        max_new_tokens_default: ``max_tokens`` when the request gives none.
        max_new_tokens_limit: Largest ``max_tokens`` accepted.
        torch_threads: CPU threads for generation (``None``: torch's default).
        auth: ``auto`` (on beyond loopback or when API keys exist), ``on``, ``off``.
        api_keys_file: Key store (``None``: ``$GREENLIST_HOME/api_keys.json``).
        verify_public: ``/v1/watermark/verify`` needs no key (then rate-limited
            per client address: ``verify_public_rate_per_min``, ``verify_public_burst``).
        max_request_bytes, max_prompt_tokens, max_text_chars, max_moderation_inputs:
            request limits (see :mod:`gateway.security.limits`).
        max_concurrent_generations, generation_queue_size, generation_queue_timeout_s:
            generations at once, requests allowed to wait, longest wait (then 429).
        upstream_connect_timeout_s, upstream_retries, upstream_retry_backoff_s:
            ``openai`` backend connect timeout and retries before any byte streamed.
        policies_dir: Folder of policy files served side by side (``None``: the
            folder of ``policy``); see docs/policies.md.
        policy_routing: Routing file (``None``: ``<policies_dir>/routing.yaml``).
        policy_watch: Reload changed policy files without a restart.
        policy_watch_interval_s: How often the policy files are polled.
        audit_enabled: Record every decision in the audit log.
        audit_url: SQLAlchemy URL of the audit database (``None``:
            ``sqlite:///$GREENLIST_HOME/audit.db``; e.g. ``postgresql+psycopg://user@host/db``).
        upstream_breaker_failures, upstream_breaker_reset_s: consecutive
            upstream failures that open the circuit breaker, and how long it
            fails fast before letting one trial request through.
        upstream_watermark: ``vllm-plugin`` when the upstream vLLM server runs Greenlist's logits processor with
            the same key set (docs/vllm.md): requests name the active key id, and ``watermark.applied`` is true
            only when the returned text verifies with it. ``none`` (default): upstream text is not watermarked.
        max_concurrent_upstream: Requests to an ``openai`` upstream at once (the local model's limit is
            ``max_concurrent_generations``); then the queue, then 429 with ``Retry-After``.
        secrets_dir: Shared keys made by ``greenlist secrets init DIR`` (``watermark_keys.json``,
            ``signing_key.pem``); every replica given the same directory uses the same keys.
        watermark_key, watermark_key_id: One watermark secret (16+ characters) and its id
            (``None``: derived from the secret). Also ``GREENLIST_WATERMARK_KEY_FILE``.
        watermark_key_file: A key set file (``{"active", "keys"}``), or a file holding one secret.
        signing_key, signing_key_file: The Ed25519 certificate signing key (PEM, or base64 of 32 bytes).
        require_shared_keys: Refuse to start without shared keys (implied by ``redis_url``).
        redis_url: Redis shared by the replicas: rate limits, quotas, cluster-wide policy reload.
        rate_limit_on_error: ``open`` (allow) or ``closed`` (503) when Redis cannot be reached.
        api_key_rate_per_min, api_key_burst: Requests per minute per API key (``None``: no limit).
        trusted_proxies: Comma-separated addresses/CIDRs of load balancers whose ``X-Forwarded-For``
            is believed (the client is the last hop not in this list).
        audit_queue_size: Audit records held in memory; beyond it they go to the spill file.
        audit_spill_dir: Where records wait while the audit database is down (``None``: ``$GREENLIST_HOME/audit-spill``).

    Any of these may also be read from a file: ``GREENLIST_<FIELD>_FILE`` (a mounted secret) for fields
    that have no ``*_file`` field of their own.
    """

    model_config = SettingsConfigDict(env_prefix="GREENLIST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    policy: Path = DEFAULT_POLICY_PATH
    backend: Literal["local", "openai"] = "local"
    model: str | None = None
    served_model_name: str | None = None
    upstream_base_url: str | None = None
    upstream_api_key: str | None = None
    upstream_model: str | None = None
    upstream_timeout_s: float = Field(60.0, gt=0)
    watermark_gamma: float = Field(0.25, gt=0.0, lt=1.0)
    watermark_seeding_scheme: Literal["selfhash", "lefthash", "robust"] = "selfhash"
    watermark_z_threshold: float = 4.0
    watermark_min_tokens: int = Field(16, ge=1)
    max_new_tokens_default: int = Field(256, ge=1)
    max_new_tokens_limit: int = Field(1024, ge=1)
    torch_threads: int | None = None
    # reliability and security (gateway/security/auth.py, gateway/security/limits.py, gateway/backends/resilience.py)
    auth: Literal["auto", "on", "off"] = "auto"
    api_keys_file: Path | None = None
    verify_public: bool = False
    verify_public_rate_per_min: float = Field(60.0, gt=0)
    verify_public_burst: int = Field(20, ge=1)
    max_request_bytes: int = Field(1_048_576, ge=1024)
    max_prompt_tokens: int = Field(4096, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    max_moderation_inputs: int = Field(64, ge=1)
    max_concurrent_generations: int = Field(2, ge=1)
    generation_queue_size: int = Field(32, ge=0)
    generation_queue_timeout_s: float = Field(30.0, gt=0)
    upstream_connect_timeout_s: float = Field(5.0, gt=0)
    upstream_retries: int = Field(2, ge=0, le=10)
    upstream_retry_backoff_s: float = Field(0.25, ge=0)
    upstream_breaker_failures: int = Field(5, ge=1)
    upstream_breaker_reset_s: float = Field(15.0, gt=0)
    upstream_watermark: Literal["none", "vllm-plugin"] = "none"
    # trust-team workflow (gateway/policy/store.py, gateway/observability/audit.py; docs/policies.md)
    policies_dir: Path | None = None
    policy_routing: Path | None = None
    policy_watch: bool = True
    policy_watch_interval_s: float = Field(2.0, gt=0)
    audit_enabled: bool = True
    audit_url: str | None = None
    audit_queue_size: int = Field(10_000, ge=1)
    audit_spill_dir: Path | None = None
    # several replicas (docs/deploy.md): shared keys, Redis limits
    max_concurrent_upstream: int = Field(64, ge=1)
    secrets_dir: Path | None = None
    watermark_key: str | None = Field(None, repr=False)
    watermark_key_id: str | None = None
    watermark_key_file: Path | None = None
    signing_key: str | None = Field(None, repr=False)
    signing_key_file: Path | None = None
    require_shared_keys: bool = False
    redis_url: str | None = Field(None, repr=False)
    rate_limit_on_error: Literal["open", "closed"] = "open"
    api_key_rate_per_min: float | None = Field(None, gt=0)
    api_key_burst: int = Field(20, ge=1)
    trusted_proxies: str = ""

    @property
    def multi_replica(self) -> bool:
        """True when this replica is one of several (``redis_url`` set or ``require_shared_keys``)."""
        return bool(self.redis_url) or self.require_shared_keys

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``trusted_proxies`` split on commas, blanks dropped."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def home(self) -> Path:
        """The data directory (``GREENLIST_HOME``)."""
        return greenlist_home()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: arguments, environment, ``GREENLIST_*_FILE`` files, then the YAML config file."""
        return init_settings, env_settings, _EnvFileSource(settings_cls), _YamlFileSource(settings_cls)


class _EnvFileSource(PydanticBaseSettingsSource):
    """``GREENLIST_<FIELD>_FILE=path``: the field's value is the file's content, stripped (mounted secrets).

    Only for fields without a ``<field>_file`` field of their own (those take the path itself).
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            path = os.environ.get(f"GREENLIST_{name.upper()}_FILE")
            if not path or f"{name}_file" in self.settings_cls.model_fields:
                continue
            try:
                out[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"GREENLIST_{name.upper()}_FILE={path}: cannot read it ({exc.strerror})") from exc
        return out


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``GREENLIST_CONFIG``, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("GREENLIST_CONFIG")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config file must be a YAML mapping of setting names to values")
        return data
