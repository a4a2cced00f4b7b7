"""Helpers for the trust-workflow tests: a gateway with a policy store and audit log but no language model.

``/v1/guardrails/check``, the admin routes, ``/metrics`` and ``/console`` need
no backend, so these tests start in a second instead of loading SmolLM2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TOX = """  - type: toxicity
    threshold: {t}
    action: block
    timeout_s: 120
"""  # a generous timeout: on a loaded CI machine a timeout would apply on_error and look like a flip


def policy_yaml(
    name: str,
    threshold: float = 1.0,
    *,
    extends: str | None = None,
    shadow: str | None = None,
    store_text: bool = False,
    extra: str = "",
) -> str:
    """A small toxicity-only policy. Threshold 1.0 allows ordinary text; 0.0 blocks everything."""
    head = f"name: {name}\n"
    if extends:
        head += f"extends: {extends}\n"
    if shadow:
        head += f"shadow: {shadow}\n"
    if store_text:
        head += "audit:\n  store_text: true\n"
    return head + extra + "input:\n" + TOX.format(t=threshold) + "output:\n" + TOX.format(t=threshold)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, as editors and deploy tools do."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class StubBackend:
    """Backend stand-in: no models, no generation (the routes used here never generate)."""

    model_ids: list[str] = []
    watermarks = False
    tokenizer = None

    async def aclose(self) -> None:
        """Nothing to release."""


def make_gateway(policies: Path, audit_url: str | None, **settings: Any):
    """A :class:`gateway.state.Gateway` over ``policies`` with an audit log at ``audit_url`` (None: no audit)."""
    from gateway.observability.audit import AuditLog
    from gateway.policy.store import PolicyStore
    from gateway.settings import Settings
    from gateway.state import Gateway

    s = Settings(
        policy=policies / "default.yaml",
        policies_dir=policies,
        audit_url=audit_url,
        auth="off",
        policy_watch_interval_s=0.2,
        **settings,
    )
    store = PolicyStore(policies, s.policy)
    store.load()
    audit = AuditLog(audit_url) if audit_url else None
    gw = Gateway(s, store, store.default, StubBackend(), None, None, None, audit)  # type: ignore[arg-type]
    return gw
