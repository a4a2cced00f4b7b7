"""The layout rules of docs/architecture.md that a grep can check: no guardrail type in gateway/, small modules,
a typed app state, a complete Backend interface."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from gateway.backends.base import Backend
from gateway.state import Gateway
from guardrails import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "guardrails", "watermark", "greenlist")
MAX_LINES = 400


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_gateway_never_names_a_guardrail_type() -> None:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, REGISTRY)) + r")\b", re.IGNORECASE)
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in _modules("gateway")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "gateway/ must know guardrails only through guardrails.base:\n" + "\n".join(hits)


def test_long_modules_say_why_at_the_top() -> None:
    long = []
    for p in _modules(*PACKAGES):
        lines = p.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any(line.startswith("Long module:") for line in lines[:60]):
            long.append(f"{p.relative_to(ROOT)} ({len(lines)} lines)")
    assert not long, f"modules over {MAX_LINES} lines without a 'Long module:' reason in the docstring: {long}"


def test_gateway_state_is_a_typed_dataclass() -> None:
    assert dataclasses.is_dataclass(Gateway)
    hints = typing.get_type_hints(Gateway)
    for f in dataclasses.fields(Gateway):
        assert f.name in hints and hints[f.name] is not typing.Any, f"Gateway.{f.name} needs a real type"


def test_backend_interface_has_what_callers_use() -> None:
    for member in ("generate", "stream", "aclose", "health", "tokenizer", "breaker", "watermarks", "model_ids"):
        assert hasattr(Backend, member), f"Backend lacks {member}"
    code = "\n".join(p.read_text(encoding="utf-8") for p in _modules("gateway"))
    assert not re.search(r"getattr\((?:gw\.)?backend", code), "callers must not probe the backend with getattr"
