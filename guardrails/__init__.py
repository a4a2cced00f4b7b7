"""Greenlist guardrails: one module per guardrail behind the interface in :mod:`guardrails.base`.

``REGISTRY`` maps a policy entry's ``type`` to ``"module:Class"``. Importing a
guardrail module must stay cheap (pydantic only); models load when the
guardrail is constructed.
"""

from __future__ import annotations

import importlib

from guardrails.base import (
    Decision,
    Direction,
    Guardrail,
    GuardrailConfig,
    GuardrailResult,
    Moderator,
    ScanContext,
    most_severe,
)

REGISTRY: dict[str, str] = {
    "citations": "guardrails.citations:CitationGuardrail",
    "llm_judge": "guardrails.llm_judge:LLMJudgeGuardrail",
    "protected_content": "guardrails.protected:ProtectedContentGuardrail",
    "toxicity": "guardrails.toxicity:ToxicityGuardrail",
}


def guardrail_class(type_name: str) -> type[Guardrail]:
    """Import and return the guardrail class registered under ``type_name``.

    Raises:
        ValueError: when no guardrail of that type is registered.
    """
    try:
        target = REGISTRY[type_name]
    except KeyError:
        raise ValueError(
            f"unknown guardrail type {type_name!r}; known types: {sorted(REGISTRY)}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = [
    "REGISTRY",
    "Decision",
    "Direction",
    "Guardrail",
    "GuardrailConfig",
    "GuardrailResult",
    "Moderator",
    "ScanContext",
    "guardrail_class",
    "most_severe",
]
