"""Policy entry of the ``llm_judge`` guardrail (:class:`LLMJudgeConfig`).

Example (``docs/llm_judge.md`` has more)::

    - type: llm_judge
      name: llama-guard
      base_url: http://guard:8000/v1
      model: meta-llama/Llama-Guard-3-1B
      api_key_env: GUARD_API_KEY        # the NAME of an environment variable, never the key
      format: llama-guard
      timeout_s: 2.0
      on_error: flag                    # block | flag | allow
      cascade: {after: toxicity, band: [0.2, 0.8]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardrails.base import GuardrailConfig

GREENLIST_CATEGORIES = ("hate", "harassment", "violence", "sexual", "self-harm", "profanity")
"""Greenlist's own content categories (the toxicity guardrail's names plus ``self-harm``)."""

OTHER = "other"
"""Mapping target for a judge category that counts but has no Greenlist counterpart (S2 crimes, privacy, ...)."""

GreenlistCategory = Literal["hate", "harassment", "violence", "sexual", "self-harm", "profanity", "other"]
Format = Literal["llama-guard", "shieldgemma", "gpt-oss-safeguard", "openai-moderation"]
HarmType = Literal["dangerous", "harassment", "hate", "sexual"]


def _all_harm_types() -> list[HarmType]:
    return ["dangerous", "harassment", "hate", "sexual"]


class CascadeConfig(BaseModel):
    """When to consult the judge: only when the local classifier is unsure.

    Attributes:
        after: Display name of the toxicity guardrail entry that runs before this one in the same
            direction; its result's ``details["categories"]`` (``{category: score in [0, 1]}``) is read
            from ``ScanContext.prior``.
        band: ``[low, high]``: the judge is asked when any considered local category score ``s`` has
            ``low <= s <= high``; otherwise the local decision stands. Default ``[0.50, 0.65]``: the band
            that judged <= 20% of texts with the best accuracy in ``benchmarks/bench_llm_judge_cascade.py``
            (``docs/llm_judge.md``).
        categories: Local categories considered for the band (default ``["toxicity"]``, the overall score,
            as benchmarked; ``null``: every category the local guardrail reports).
    """

    model_config = ConfigDict(extra="forbid")

    after: str
    band: tuple[float, float] = (0.50, 0.65)
    categories: list[str] | None = Field(default_factory=lambda: ["toxicity"])

    @model_validator(mode="after")
    def _band_ordered(self) -> CascadeConfig:
        low, high = self.band
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"cascade band must satisfy 0 <= low <= high <= 1; got {list(self.band)}")
        return self


class LLMJudgeConfig(GuardrailConfig):
    """Policy entry of the ``llm_judge`` guardrail.

    Attributes:
        type: Always ``"llm_judge"``.
        base_url: OpenAI-compatible API root, e.g. ``http://guard:8000/v1``; the guardrail posts to
            ``/completions``, ``/chat/completions`` or ``/moderations`` below it.
        model: Model name sent in each request (and part of the cache key).
        api_key_env: Name of the environment variable holding the bearer token (``None``: no
            ``Authorization`` header). The key itself never appears in the policy.
        format: Prompt template and answer parser (:mod:`guardrails.llm_judge.formats`).
        api: ``completions`` sends the prompt rendered here (Llama Guard, ShieldGemma);
            ``chat`` sends chat messages (the server's chat template renders Llama Guard's prompt;
            always used for ``gpt-oss-safeguard``). Ignored by ``openai-moderation``.
        llama_guard_version: 3 or 4: which special tokens wrap the Llama Guard prompt.
        timeout_s: Seconds allowed for one HTTP call to the judge (connect + read).
        on_error: Decision when the judge fails (timeout, connection error, 5xx, 429, unparseable
            answer, open circuit): ``block``, ``flag`` or ``allow``. The result always carries
            ``error``; ``allow`` lets the text through but is never recorded as a pass.
        threshold: For scored formats (ShieldGemma with logprobs): fires at P(Yes) >= threshold.
        categories: ``{judge category: Greenlist category or null}`` overriding the format's default
            mapping; ``null`` ignores a judge category. A judge category in neither map counts as
            ``other``.
        policy: Written policy for ``gpt-oss-safeguard`` (system prompt); default: Greenlist's six
            categories. ``policy_file``: the same, read from a file (relative to the working directory).
        shieldgemma_mode: ``per_policy`` (one call per harm type, as ShieldGemma was trained) or
            ``combined`` (all harm types in one prompt: one call, coarser).
        shieldgemma_policies: Harm types asked about (keys of the ShieldGemma policy table).
        context_turns: Earlier messages shown with each judged turn (Llama Guard and ShieldGemma see
            the conversation; more context = longer prompts).
        cascade: Consult the judge only when the local classifier is unsure (``None``: always ask).
        max_concurrency: Judge calls in flight at once from this guardrail entry.
        cache_size: Verdicts kept in the LRU cache (0 disables it).
        breaker_failures: Consecutive failures that open the circuit breaker.
        breaker_reset_s: Seconds the circuit stays open before one trial call.
    """

    type: Literal["llm_judge"] = "llm_judge"  # type: ignore[assignment]
    on_error: Literal["block", "flag", "allow"] = "block"  # type: ignore[assignment]
    timeout_s: float = Field(2.0, gt=0)
    base_url: str
    model: str
    api_key_env: str | None = None
    format: Format
    api: Literal["completions", "chat"] = "completions"
    llama_guard_version: Literal[3, 4] = 3
    categories: dict[str, GreenlistCategory | None] = Field(default_factory=dict)
    policy: str | None = None
    policy_file: Path | None = None
    shieldgemma_mode: Literal["per_policy", "combined"] = "per_policy"
    shieldgemma_policies: list[HarmType] = Field(default_factory=_all_harm_types)
    context_turns: int = Field(2, ge=0, le=50)
    cascade: CascadeConfig | None = None
    max_concurrency: int = Field(4, ge=1, le=256)
    cache_size: int = Field(4096, ge=0)
    breaker_failures: int = Field(5, ge=1)
    breaker_reset_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_policy_source(self) -> LLMJudgeConfig:
        if self.policy is not None and self.policy_file is not None:
            raise ValueError("give either policy or policy_file, not both")
        if (self.policy is not None or self.policy_file is not None) and self.format != "gpt-oss-safeguard":
            raise ValueError(f"policy / policy_file apply to format gpt-oss-safeguard only, not {self.format}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://; got {self.base_url!r}")
        return self

    def policy_text(self) -> str | None:
        """The written policy (``policy``, or the contents of ``policy_file``), or ``None`` for the default.

        Raises:
            OSError: when ``policy_file`` cannot be read.
        """
        if self.policy_file is not None:
            return self.policy_file.read_text(encoding="utf-8")
        return self.policy
