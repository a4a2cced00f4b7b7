"""Greenlist guardrails: one module per guardrail behind the interface in :mod:`guardrails.base`.

``REGISTRY`` maps a policy entry's ``type`` to ``"module:Class"``. Importing a
guardrail module must stay cheap (pydantic only); models load when the
guardrail is constructed.
"""

from __future__ import annotations

import functools
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

# Command-line groups the guardrails bring, mounted by ``greenlist``: group name -> "module:Typer app".
# A name starting with "-" mounts the app's commands at the top level instead of as a group.
COMMANDS: dict[str, str] = {
    "corpus": "guardrails.protected.cli:app",
    "citations": "guardrails.citations.cli:app",
    "-toxicity": "guardrails.toxicity.training.cli:app",  # train-toxicity, audit-fairness, calibrate, compare-models
}


# The guardrail type that answers /v1/moderations when the live policy has no Moderator guardrail.
DEFAULT_MODERATOR = "toxicity"


@functools.cache
def default_moderator() -> Moderator:
    """The :data:`DEFAULT_MODERATOR` guardrail with its default config, built once per process.

    Raises:
        Exception: whatever the guardrail's constructor raises (e.g. a missing model).
        TypeError: when the registered class does not implement :class:`Moderator`.
    """
    cls = guardrail_class(DEFAULT_MODERATOR)
    guardrail = cls(cls.Config(type=DEFAULT_MODERATOR))
    if not isinstance(guardrail, Moderator):
        raise TypeError(f"{cls.__name__} does not implement Moderator")
    return guardrail


def guardrail_class(type_name: str) -> type[Guardrail]:
    """Import and return the guardrail class registered under ``type_name``.

    Raises:
        ValueError: when no guardrail of that type is registered.
    """
    try:
        target = REGISTRY[type_name]
    except KeyError:
        raise ValueError(f"unknown guardrail type {type_name!r}; known types: {sorted(REGISTRY)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = [
    "COMMANDS",
    "DEFAULT_MODERATOR",
    "REGISTRY",
    "Decision",
    "Direction",
    "Guardrail",
    "GuardrailConfig",
    "GuardrailResult",
    "Moderator",
    "ScanContext",
    "default_moderator",
    "guardrail_class",
    "most_severe",
]
