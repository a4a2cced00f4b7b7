"""Policy files: the YAML trust teams edit, its schema, and a loader that names file, line and field.

A policy says which guardrails run on prompts (``input``) and outputs
(``output``), each one's threshold and action, the refusal message, how
streamed output is checked, and whether generated text is watermarked. The
schema is defined once here (pydantic); every guardrail contributes its own
config model through :data:`guardrails.REGISTRY`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guardrails import REGISTRY, guardrail_class

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


class WatermarkPolicy(BaseModel):
    """Watermarking of generated text (Kirchenbauer et al., ICML 2023).

    γ and the seeding scheme are server settings (verification must know
    them); a policy chooses whether to watermark and how strongly (δ).
    """

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    delta: float = Field(2.0, gt=0.0, le=20.0, description="δ, logit bias added to green tokens")


class StreamingPolicy(BaseModel):
    """How streamed output is checked.

    ``buffer`` holds text back until the window containing it has passed the
    output guardrails; ``stream-first`` sends text at once and stops the
    stream when a later check blocks. Either way the output guardrails run
    every ``window_tokens`` tokens on the last ``window_tokens + overlap_tokens``
    tokens, and once more on the whole text at the end.
    """

    model_config = ConfigDict(extra="forbid")
    mode: Literal["buffer", "stream-first"] = "buffer"
    window_tokens: int = Field(24, ge=1, le=4096)
    overlap_tokens: int = Field(16, ge=0, le=4096)


def _entry_type() -> Any:
    configs = tuple(guardrail_class(name).Config for name in REGISTRY)
    union = configs[0] if len(configs) == 1 else Union[configs]  # type: ignore[valid-type]
    return Annotated[union, Field(discriminator="type")]


GuardrailEntry = _entry_type()


class Policy(BaseModel):
    """One policy file.

    Attributes:
        name: Policy name (shown in every response's ``greenlist`` object).
        description: Free text for humans.
        refusal_message: Text returned when a prompt or output is blocked.
        watermark: Watermark settings.
        streaming: Checking of streamed output.
        input: Guardrails run on prompts, in order.
        output: Guardrails run on outputs, in order; a guardrail that rewrites
            the text (``redact``) hands the rewritten text to the next one.
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    refusal_message: str = "I can't help with that request: it was blocked by the content policy."
    watermark: WatermarkPolicy = WatermarkPolicy()
    streaming: StreamingPolicy = StreamingPolicy()
    input: list[GuardrailEntry] = []  # type: ignore[valid-type]
    output: list[GuardrailEntry] = []  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _unique_names(self) -> "Policy":
        for direction in ("input", "output"):
            names = [entry.display_name for entry in getattr(self, direction)]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{direction}: guardrail names must be unique, repeated: {dupes}; set 'name:' on each")
        return self


@dataclass(frozen=True)
class PolicyIssue:
    """One validation problem: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"


class PolicyError(ValueError):
    """A policy file is invalid; ``issues`` lists every problem with its line."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        super().__init__("invalid policy:\n  " + "\n  ".join(str(i) for i in issues))


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy with its source and version.

    Attributes:
        policy: The validated policy.
        version: First 12 hex digits of the SHA-256 of the file's bytes.
        path: Where it was read from.
    """

    policy: Policy
    version: str
    path: Path


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                continue  # pydantic adds union tags such as 'toxicity' to the path
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            continue
        line = node.start_mark.line + 1
    return line


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML ``text``.

    Args:
        text: YAML source.
        source: File name used in error messages.

    Returns:
        The validated :class:`Policy`.

    Raises:
        PolicyError: listing every problem with file, line and field.
    """
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError([PolicyIssue(source, mark.line + 1 if mark else None, "<yaml>", str(exc).splitlines()[0])]) from None
    if not isinstance(data, dict):
        raise PolicyError([PolicyIssue(source, 1, "<root>", "a policy file must be a YAML mapping (name:, input:, output:, ...)")])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "<root>"
            issues.append(PolicyIssue(source, _line_of(node, loc), field, err["msg"]))
        raise PolicyError(issues) from None


def load_policy(path: str | Path) -> LoadedPolicy:
    """Read and validate a policy file.

    Raises:
        PolicyError: for a missing, unreadable or invalid file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError([PolicyIssue(str(path), None, "<file>", exc.strerror or str(exc))]) from None
    policy = parse_policy(raw.decode("utf-8", errors="replace"), str(path))
    return LoadedPolicy(policy=policy, version=hashlib.sha256(raw).hexdigest()[:12], path=path)


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of policy files, for editors that validate YAML as you type."""
    return Policy.model_json_schema()
