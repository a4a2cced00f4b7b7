"""Policy files: the YAML trust teams edit, its schema, and a loader that names file, line and field.

A policy says which guardrails run on prompts (``input``) and outputs
(``output``), each one's threshold and action, the refusal message, how
streamed output is checked, and whether generated text is watermarked. The
schema is defined once here (pydantic); every guardrail contributes its own
config model through :data:`guardrails.REGISTRY`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guardrails import REGISTRY, guardrail_class


def _default_policy_path() -> Path:
    """``policies/default.yaml`` of a checkout, else the copy inside the installed package (``bundled_policies``)."""
    checkout = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
    if checkout.exists():
        return checkout
    from importlib.resources import files

    return Path(str(files("gateway").joinpath("bundled_policies", "default.yaml")))


DEFAULT_POLICY_PATH = _default_policy_path()


class WatermarkPolicy(BaseModel):
    """Watermarking of generated text (Kirchenbauer et al., ICML 2023).

    γ and the seeding scheme are server settings (verification must know
    them); a policy chooses whether to watermark and how strongly (δ).
    """

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    delta: float = Field(2.0, gt=0.0, le=20.0, description="δ, logit bias added to green tokens")


class AuditPolicy(BaseModel):
    """What the audit log keeps of this policy's decisions.

    Raw text is stored only when ``store_text`` is true; otherwise each
    decision records the text's SHA-256 and length.
    """

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="record this policy's decisions in the audit log")
    store_text: bool = Field(False, description="store raw prompt/output text (default: SHA-256 and length only)")


class StreamingPolicy(BaseModel):
    """How streamed output is checked.

    ``buffer`` holds text back until the window containing it has passed the
    output guardrails; ``stream-first`` sends text at once and stops the
    stream when a later check blocks. With ``unit: sentence`` (default) the
    output guardrails run on each newly completed sentence (with up to two
    earlier sentences as context), so ``buffer`` releases text sentence by
    sentence; a sentence still open after ``4 * window_tokens`` tokens is
    checked as it stands. With ``unit: tokens`` they run every
    ``window_tokens`` tokens on the last ``window_tokens + overlap_tokens``
    tokens. Either way they run once more on the whole text at the end.
    """

    model_config = ConfigDict(extra="forbid")
    mode: Literal["buffer", "stream-first"] = "buffer"
    unit: Literal["sentence", "tokens"] = "sentence"
    window_tokens: int = Field(24, ge=1, le=4096)
    overlap_tokens: int = Field(16, ge=0, le=4096)


Role = Literal["system", "developer", "user", "assistant", "tool"]


def _entry_type() -> Any:
    configs = tuple(guardrail_class(name).Config for name in REGISTRY)
    union = configs[0] if len(configs) == 1 else Union[configs]  # noqa: UP007 - built at run time from the registry
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
        input: Guardrails run on prompts, in order. Either a list of guardrails, or a mapping
            ``{roles: [...], mode: ..., guardrails: [...]}`` that also says which chat roles are checked and when.
        input_roles: Chat roles whose messages the input guardrails check, each message on its own
            (default ``user`` and ``tool``; add ``system``/``developer`` and ``assistant`` to check those turns
            too, e.g. an assistant turn a client could have forged). Set through ``input.roles``.
        input_mode: When the input guardrails run against a remote upstream (``openai`` backend; the embedded
            model always generates after the check): ``pre_call`` (default) checks the prompt first and sends it
            upstream only when it passed; ``during_call`` sends it upstream at once and checks it meanwhile, as
            LiteLLM's ``during_call`` guardrails do: a blocked or redacted prompt's upstream call is cancelled
            and nothing of it reaches the client (a redacted prompt is then sent again, redacted), but the
            upstream did see it and may bill it. Set through ``input.mode``.
        output: Guardrails run on outputs, in order; a guardrail that rewrites
            the text (``redact``) hands the rewritten text to the next one.
        extends: Name of a base policy (a file ``NAME.yaml`` beside this one,
            or a relative path ending in ``.yaml``) whose fields this one
            inherits: mappings are deep-merged, lists (``input``, ``output``)
            are replaced whole.
        shadow: Name of a candidate policy run beside this one on every
            request: its decisions are computed and audited, never enforced.
        audit: What the audit log keeps (see :class:`AuditPolicy`).
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    extends: str | None = Field(None, description="base policy this one inherits from (deep merge; lists replaced)")
    shadow: str | None = Field(None, description="candidate policy run in shadow: decisions logged, not enforced")
    audit: AuditPolicy = AuditPolicy()
    refusal_message: str = "I can't help with that request: it was blocked by the content policy."
    watermark: WatermarkPolicy = WatermarkPolicy()
    streaming: StreamingPolicy = StreamingPolicy()
    input: list[GuardrailEntry] = []  # type: ignore[valid-type]
    input_roles: list[Role] = Field(["user", "tool"], description="chat roles the input guardrails check (input.roles)")
    input_mode: Literal["pre_call", "during_call"] = Field(
        "pre_call",
        description="pre_call: check the prompt, then call the upstream; during_call: call a remote upstream while "
        "the prompt is checked (its answer is dropped when the prompt is blocked) (input.mode)",
    )
    output: list[GuardrailEntry] = []  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _input_mapping(cls, data: Any) -> Any:
        """Accept ``input: {roles: [...], mode: ..., guardrails: [...]}`` beside the plain list form."""
        if isinstance(data, dict) and isinstance(data.get("input"), dict):
            block = dict(data["input"])
            unknown = sorted(set(block) - {"roles", "mode", "guardrails"})
            if unknown:
                raise ValueError(f"input: unknown keys {unknown}; expected roles, mode and guardrails")
            data = {**data, "input": block.get("guardrails") or []}
            if "roles" in block:
                data["input_roles"] = block["roles"]
            if "mode" in block:
                data["input_mode"] = block["mode"]
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
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
        version: First 12 hex digits of the SHA-256 of the file's bytes (for a
            policy with ``extends``, of its bytes and its base's version, so a
            change to the base changes the version of every child).
        path: Where it was read from.
        data: The merged YAML mapping that was validated (after ``extends``).
        bases: Files inherited from, nearest first.
    """

    policy: Policy
    version: str
    path: Path
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    bases: tuple[Path, ...] = ()


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                continue  # pydantic adds the entry's type tag to the path
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            continue
        line = node.start_mark.line + 1
    return line


def _compose(text: str, source: str) -> tuple[yaml.Node | None, dict[str, Any]]:
    """Parse YAML ``text`` into its node tree (for line numbers) and its mapping."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except RecursionError:  # found by fuzzing: deeply nested flow collections overflow PyYAML's recursive parser
        raise PolicyError([PolicyIssue(source, None, "<yaml>", "the document is nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(
            [PolicyIssue(source, mark.line + 1 if mark else None, "<yaml>", str(exc).splitlines()[0])]
        ) from None
    if not isinstance(data, dict):
        raise PolicyError(
            [PolicyIssue(source, 1, "<root>", "a policy file must be a YAML mapping (name:, input:, output:, ...)")]
        )
    return node, data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` onto ``base``: mappings merge key by key, anything else (lists too) is replaced.

    Args:
        base: The inherited mapping (not modified).
        override: The child's mapping (not modified).

    Returns:
        A new mapping.
    """
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# Fields a child never inherits from its base.
_NOT_INHERITED = ("name", "extends", "shadow")


_INPUT_BLOCK = {"input": ("input", "guardrails"), "input_roles": ("input", "roles"), "input_mode": ("input", "mode")}
"""Where the fields set through the ``input: {roles, mode, guardrails}`` mapping stand in the file."""


def _validate(node: yaml.Node | None, data: dict[str, Any], source: str) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        block = isinstance(data.get("input"), dict)
        issues = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if block and loc and loc[0] in _INPUT_BLOCK:  # name the field as written: input.mode, not input_mode
                loc = _INPUT_BLOCK[loc[0]] + loc[1:]
            field_name = ".".join(str(p) for p in loc) or "<root>"
            issues.append(PolicyIssue(source, _line_of(node, loc), field_name, err["msg"]))
        raise PolicyError(issues) from None


def parse_policy(text: str, source: str = "<policy>", base: dict[str, Any] | None = None) -> Policy:
    """Validate policy YAML ``text``.

    Args:
        text: YAML source.
        source: File name used in error messages.
        base: Merged mapping of the base policy to inherit from (see
            :func:`deep_merge`); ``None`` validates ``text`` alone.

    Returns:
        The validated :class:`Policy`.

    Raises:
        PolicyError: listing every problem with file, line and field.
    """
    node, data = _compose(text, source)
    if base is not None:
        data = deep_merge({k: v for k, v in base.items() if k not in _NOT_INHERITED}, data)
    return _validate(node, data, source)


def _extends_path(value: Any, path: Path) -> Path:
    text = str(value)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return (path.parent / text).resolve()
    return (path.parent / f"{text}.yaml").resolve()


def load_policy(path: str | Path, _chain: tuple[Path, ...] = ()) -> LoadedPolicy:
    """Read and validate a policy file, following ``extends`` to its base files.

    A child without ``name`` takes its file name (without ``.yaml``). Errors in
    a base file are reported against the base file, plus one issue on the
    child's ``extends`` line.

    Args:
        path: The policy file.

    Returns:
        The :class:`LoadedPolicy`.

    Raises:
        PolicyError: for a missing, unreadable or invalid file, a missing or
            invalid base, or an ``extends`` cycle.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError([PolicyIssue(str(path), None, "<file>", exc.strerror or str(exc))]) from None
    text = raw.decode("utf-8", errors="replace")
    node, data = _compose(text, str(path))
    extends = data.get("extends")
    version_bytes = raw
    bases: tuple[Path, ...] = ()
    if extends is not None and isinstance(extends, str) and extends:
        line = _line_of(node, ("extends",))
        base_path = _extends_path(extends, path)
        chain = _chain + (path.resolve(),)
        if base_path in chain:
            cycle = " -> ".join(p.name for p in chain + (base_path,))
            raise PolicyError([PolicyIssue(str(path), line, "extends", f"inheritance cycle: {cycle}")])
        if not base_path.exists():
            raise PolicyError(
                [PolicyIssue(str(path), line, "extends", f"base policy {extends!r} not found (looked for {base_path})")]
            )
        try:
            base = load_policy(base_path, chain)
        except PolicyError as exc:
            raise PolicyError(
                [PolicyIssue(str(path), line, "extends", f"base policy {extends!r} is invalid"), *exc.issues]
            ) from None
        data = deep_merge({k: v for k, v in base.data.items() if k not in _NOT_INHERITED}, data)
        version_bytes = raw + b"\0extends:" + base.version.encode()
        bases = (base.path, *base.bases)
    if "name" not in data:
        data = {**data, "name": path.stem}
    policy = _validate(node, data, str(path))
    return LoadedPolicy(
        policy=policy, version=hashlib.sha256(version_bytes).hexdigest()[:12], path=path, data=data, bases=bases
    )


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of policy files, for editors that validate YAML as you type."""
    return Policy.model_json_schema()
