"""What the policy store holds: shared guardrail instances, immutable snapshots, resolutions, reload results."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.policy.routing import Routing
from gateway.serving.pipeline import Pipeline
from guardrails import Guardrail, GuardrailConfig, guardrail_class


class GuardrailCache:
    """Guardrail instances shared by every policy (and kept across reloads) when their entries are identical.

    Two policies with the same entry (same type and every field equal, e.g.
    ``default``'s entry inherited by a child) use one instance, so a database
    or an index a guardrail loads is loaded once; a reload rebuilds only the
    entries that changed. Guardrails are thread-safe by contract
    (:mod:`guardrails.base`), so sharing is safe.
    """

    def __init__(self) -> None:
        self._items: dict[str, Guardrail] = {}
        self._lock = threading.Lock()
        self.built = 0

    @staticmethod
    def key(config: GuardrailConfig) -> str:
        """Identity of a policy entry: its type and all its fields."""
        return f"{config.type}:{config.model_dump_json()}"

    def get(self, config: GuardrailConfig) -> Guardrail:
        """The shared instance for ``config``, constructing it on first use.

        Raises:
            Exception: whatever the guardrail's constructor raises (nothing is cached then).
        """
        k = self.key(config)
        with self._lock:
            found = self._items.get(k)
        if found is not None:
            return found
        made = guardrail_class(config.type)(config)
        with self._lock:
            self.built += 1
            return self._items.setdefault(k, made)

    def retain(self, pipelines: Iterable[Pipeline]) -> None:
        """Drop instances no pipeline in ``pipelines`` uses (after a reload went live)."""
        keep = {self.key(g.config) for p in pipelines for gs in p.guardrails.values() for g in gs}
        with self._lock:
            for k in [k for k in self._items if k not in keep]:
                del self._items[k]

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class PolicySnapshot:
    """One consistent set of live policies (never modified once built).

    Attributes:
        pipelines: ``{policy name: compiled pipeline}``.
        unavailable: ``{policy name: error}`` for valid policies whose
            guardrails could not be constructed (e.g. a database not loaded yet).
        routing: The routing config.
        default: Name of the default policy.
        generation: 1 for the first load, +1 for each accepted reload.
        loaded_at: Unix time the snapshot went live.
        fingerprint: ``{file: (mtime_ns, size)}`` of the files it was built from.
    """

    pipelines: dict[str, Pipeline]
    unavailable: dict[str, str]
    routing: Routing
    default: str
    generation: int
    loaded_at: float
    fingerprint: dict[str, tuple[int, int]] = field(default_factory=dict)

    def shadow_name(self, live: str) -> str | None:
        """Name of the policy run in shadow beside ``live``, or None."""
        if live in self.routing.shadow:
            return self.routing.shadow[live]
        pipeline = self.pipelines.get(live)
        return pipeline.policy.shadow if pipeline is not None else None

    def versions(self) -> dict[str, str]:
        """``{policy name: version}`` of the live policies."""
        return {name: p.version for name, p in sorted(self.pipelines.items())}


@dataclass(frozen=True)
class Resolution:
    """The policy chosen for one request.

    Attributes:
        pipeline: The live (enforced) pipeline.
        shadow: The pipeline run in shadow, or None.
        reason: How it was chosen: ``explicit``, ``tenant``, ``model`` or ``default``.
        snapshot: The snapshot both came from.
    """

    pipeline: Pipeline
    shadow: Pipeline | None
    reason: str
    snapshot: PolicySnapshot


@dataclass
class ReloadResult:
    """Outcome of :meth:`PolicyStore.reload`.

    Attributes:
        ok: True when the new snapshot went live (or nothing changed).
        generation: The live generation after the call.
        changed: Policies whose version changed (added ones included).
        removed: Policies no longer present.
        errors: Every problem, as ``FILE:LINE: field: message``, when rejected.
        versions: ``{policy: version}`` now live.
    """

    ok: bool
    generation: int
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the reload endpoint's body)."""
        return {
            "ok": self.ok,
            "generation": self.generation,
            "changed": self.changed,
            "removed": self.removed,
            "errors": self.errors,
            "versions": self.versions,
        }
