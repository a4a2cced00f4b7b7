"""The routing file (``policies/routing.yaml``): which policy a tenant or a model gets, and shadows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.policy.schema import PolicyError, PolicyIssue, _line_of

ROUTING_FILE = "routing.yaml"


class TenantRoute(BaseModel):
    """Routing of one tenant (or of requests without a tenant).

    Attributes:
        policy: Policy applied to the tenant's requests (``None``: by model, then default).
        allow: Policies the tenant may name explicitly in a request body
            (``"*"`` = any). The tenant's own policy is always allowed.
    """

    model_config = ConfigDict(extra="forbid")
    policy: str | None = None
    allow: list[str] = Field(default_factory=list)


class Routing(BaseModel):
    """The routing file: tenants, models and shadows.

    Attributes:
        tenants: ``{tenant: TenantRoute}``.
        anonymous: Route of requests without a tenant (auth off); by default
            any policy may be named.
        unknown_tenant: Route of a tenant not listed in ``tenants``.
        models: ``{model name: policy}``.
        shadow: ``{live policy: shadow policy}``; overrides a policy's own ``shadow``.
    """

    model_config = ConfigDict(extra="forbid")
    tenants: dict[str, TenantRoute] = Field(default_factory=dict)
    anonymous: TenantRoute = TenantRoute(allow=["*"])
    unknown_tenant: TenantRoute = TenantRoute()
    models: dict[str, str] = Field(default_factory=dict)
    shadow: dict[str, str] = Field(default_factory=dict)


def load_routing(path: Path | None) -> Routing:
    """Read and validate a routing file (absent file: the default routing).

    Raises:
        PolicyError: with file, line and field for every problem.
    """
    if path is None or not path.exists():
        return Routing()
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(
            [PolicyIssue(str(path), mark.line + 1 if mark else None, "<yaml>", str(exc).splitlines()[0])]
        ) from None
    if not isinstance(data, dict):
        raise PolicyError([PolicyIssue(str(path), 1, "<root>", "the routing file must be a YAML mapping")])
    try:
        return Routing.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(
            [
                PolicyIssue(
                    str(path), _line_of(node, tuple(e["loc"])), ".".join(str(p) for p in e["loc"]) or "<root>", e["msg"]
                )
                for e in exc.errors()
            ]
        ) from None


def _yaml_line(path: Path, loc: tuple[Any, ...]) -> int | None:
    try:
        return _line_of(yaml.compose(path.read_text(encoding="utf-8", errors="replace")), loc)
    except Exception:  # noqa: BLE001
        return None


def _name_line(path: Path) -> int | None:
    return _yaml_line(path, ("name",))


def _field_line(path: Path, name: str) -> int | None:
    return _yaml_line(path, (name,))


def _routing_line(path: Path, where: str) -> int | None:
    return _yaml_line(path, tuple(where.split(".")))
