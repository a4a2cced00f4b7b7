"""Several live policies, matched to requests, reloaded safely while the gateway serves.

A :class:`PolicyStore` holds one immutable :class:`PolicySnapshot`: every
compiled :class:`~gateway.serving.pipeline.Pipeline` of the ``policies/`` directory,
the routing config (``policies/routing.yaml``) and the default policy. A reload
builds a complete new snapshot off to the side (validating every file, then
constructing the guardrails of changed policies only) and then replaces the one
reference the store holds. A request reads that reference once and keeps the
snapshot it got, so no request ever sees a half-loaded policy set; an invalid
change is rejected as a whole and the last good snapshot keeps serving.

Matching a request to a policy (:meth:`PolicyStore.resolve`), in order:

1. an explicit ``greenlist: {"policy": NAME}`` in the body, if the caller may
   choose it (its tenant's ``allow`` list, ``"*"`` for any; admin keys always);
2. the tenant of the API key (``tenants.<tenant>.policy``), as set by the auth
   middleware on ``request.state.tenant``;
3. the requested model (``models.<model>``);
4. the default policy.

A policy may run a candidate in shadow (``shadow: NAME`` in the policy, or
``shadow: {live: candidate}`` in the routing file, which wins).

Long module: PolicyStore is one class whose load, reload, resolve and watch share the snapshot-swap invariant.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import APIError
from gateway.policy.routing import ROUTING_FILE, Routing, _field_line, _name_line, _routing_line, load_routing
from gateway.policy.schema import LoadedPolicy, PolicyError, PolicyIssue, load_policy
from gateway.policy.snapshot import GuardrailCache, PolicySnapshot, ReloadResult, Resolution
from gateway.serving.pipeline import Pipeline
from greenlist.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("greenlist.policies")


class PolicyStore:
    """The live policies of a gateway (see the module doc).

    Args:
        directory: Folder of policy files (``*.yaml``; the file name, without
            ``.yaml``, must equal the policy's ``name``) and of ``routing.yaml``.
        default_path: The default policy file (may lie outside ``directory``);
            ``None``: ``directory/default.yaml``.
        routing_path: Routing file; ``None``: ``directory/routing.yaml`` if present.
        pipeline_factory: Builds a pipeline from a loaded policy (default:
            :class:`Pipeline` with guardrails from the store's :class:`GuardrailCache`).
        clock: Time source of the watcher's polling and of snapshot timestamps (tests pass a ManualClock).

    Call :meth:`load` once before use.
    """

    def __init__(
        self,
        directory: str | Path,
        default_path: str | Path | None = None,
        routing_path: str | Path | None = None,
        pipeline_factory: Callable[[LoadedPolicy], Pipeline] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.directory, self.clock = Path(directory), clock
        self.default_path = Path(default_path) if default_path else self.directory / "default.yaml"
        self.routing_path = Path(routing_path) if routing_path else self.directory / ROUTING_FILE
        self.guardrail_cache = GuardrailCache()
        self.pipeline_factory = pipeline_factory or (lambda lp: Pipeline(lp, build=self.guardrail_cache.get))
        self._snapshot: PolicySnapshot | None = None
        self._lock = threading.Lock()  # one reload at a time
        self._listeners: list[Callable[[PolicySnapshot], None]] = []
        self.last_error: list[str] = []
        self.last_attempt: float | None = None
        self._seen_fingerprint: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ loading

    @property
    def snapshot(self) -> PolicySnapshot:
        """The live snapshot.

        Raises:
            RuntimeError: before :meth:`load`.
        """
        snap = self._snapshot
        if snap is None:
            raise RuntimeError("PolicyStore.load() has not been called")
        return snap

    @property
    def default(self) -> Pipeline:
        """The default policy's pipeline."""
        snap = self.snapshot
        return snap.pipelines[snap.default]

    def on_swap(self, listener: Callable[[PolicySnapshot], None]) -> None:
        """Call ``listener(snapshot)`` after each snapshot goes live (and now, if loaded)."""
        self._listeners.append(listener)
        if self._snapshot is not None:
            listener(self._snapshot)

    def files(self) -> list[Path]:
        """The policy files the store reads: ``directory/*.yaml`` (not the routing file) and the default file."""
        found = sorted(
            p for p in self.directory.glob("*.yaml") if p.name != ROUTING_FILE and not p.name.startswith((".", "_"))
        )
        if self.default_path.resolve() not in {p.resolve() for p in found}:
            found.append(self.default_path)
        return found

    def fingerprint(self) -> dict[str, tuple[int, int]]:
        """``{file: (mtime_ns, size)}`` of every file a snapshot depends on (cheap; used by the watcher)."""
        out: dict[str, tuple[int, int]] = {}
        for path in [*self.files(), self.routing_path]:
            try:
                st = path.stat()
            except OSError:
                continue
            out[str(path)] = (st.st_mtime_ns, st.st_size)
        return out

    def load(self) -> PolicySnapshot:
        """First load: validate and compile everything; make it live.

        Returns:
            The live snapshot.

        Raises:
            PolicyError: when any file is invalid or the default policy cannot be built.
        """
        with self._lock:
            snap = self._build(None)
            self._publish(snap)
            return snap

    def reload(self) -> ReloadResult:
        """Re-read the policy files; swap in the new set only if all of it is valid.

        Policies whose version did not change keep their compiled pipeline
        (no model is reloaded). A policy that validates but cannot be built
        rejects the reload when it was live before; a new one is listed as
        unavailable. Thread-safe; blocking (call it from a worker thread).

        Returns:
            The :class:`ReloadResult`; rejected changes are logged at ERROR.
        """
        with self._lock:
            old = self.snapshot
            self.last_attempt = self.clock.time()
            try:
                snap = self._build(old)
            except PolicyError as exc:
                self.last_error = [str(i) for i in exc.issues]
                self._seen_fingerprint = self.fingerprint()
                log.error(
                    "policy reload rejected; still serving generation %d:\n  %s",
                    old.generation,
                    "\n  ".join(self.last_error),
                )
                _metric_reload("rejected")
                return ReloadResult(False, old.generation, errors=self.last_error, versions=old.versions())
            before, after = old.versions(), snap.versions()
            changed = sorted(n for n, v in after.items() if before.get(n) != v)
            removed = sorted(set(before) - set(after))
            self.last_error = []
            if not changed and not removed and snap.routing == old.routing and snap.unavailable == old.unavailable:
                self._seen_fingerprint = snap.fingerprint
                return ReloadResult(True, old.generation, versions=after)
            self._publish(snap)
            log.info("policies reloaded (generation %d): changed %s, removed %s", snap.generation, changed, removed)
            _metric_reload("applied")
            return ReloadResult(True, snap.generation, changed, removed, versions=after)

    def _publish(self, snap: PolicySnapshot) -> None:
        self._snapshot = snap  # the one reference swap every request sees
        self._seen_fingerprint = snap.fingerprint
        self.guardrail_cache.retain(snap.pipelines.values())
        _metric_versions(snap)
        for listener in self._listeners:
            try:
                listener(snap)
            except Exception:  # noqa: BLE001
                log.exception("policy swap listener failed")

    def validate(self) -> tuple[dict[str, LoadedPolicy], Routing, str]:
        """Validate every policy file and the routing file without building guardrails.

        Returns:
            ``({name: LoadedPolicy}, routing, default policy name)``.

        Raises:
            PolicyError: listing every problem (file, line, field), including
                names that do not match their file, duplicates, and unknown
                policies named by ``shadow`` or the routing file.
        """
        issues: list[PolicyIssue] = []
        loaded: dict[str, LoadedPolicy] = {}
        default_name: str | None = None
        for path in self.files():
            try:
                lp = load_policy(path)
            except PolicyError as exc:
                issues.extend(exc.issues)
                continue
            name = lp.policy.name
            is_default = path.resolve() == self.default_path.resolve()
            if not is_default and name != path.stem:
                issues.append(
                    PolicyIssue(
                        str(path),
                        _name_line(path),
                        "name",
                        f"policy name {name!r} must match the file name {path.stem!r}",
                    )
                )
                continue
            if name in loaded:
                issues.append(
                    PolicyIssue(
                        str(path), _name_line(path), "name", f"policy {name!r} is also defined in {loaded[name].path}"
                    )
                )
                continue
            loaded[name] = lp
            if is_default:
                default_name = name
        try:
            routing = load_routing(self.routing_path)
        except PolicyError as exc:
            issues.extend(exc.issues)
            routing = Routing()
        issues.extend(self._check_references(loaded, routing))
        if issues:
            raise PolicyError(issues)
        if default_name is None:
            raise PolicyError([PolicyIssue(str(self.default_path), None, "<file>", "default policy not loaded")])
        return loaded, routing, default_name

    def _build(self, old: PolicySnapshot | None) -> PolicySnapshot:
        fingerprint = self.fingerprint()
        loaded, routing, default_name = self.validate()
        issues: list[PolicyIssue] = []

        pipelines: dict[str, Pipeline] = {}
        unavailable: dict[str, str] = {}
        for name, lp in loaded.items():
            previous = old.pipelines.get(name) if old else None
            if previous is not None and previous.version == lp.version:
                pipelines[name] = previous  # unchanged: keep the constructed guardrails
                continue
            try:
                pipelines[name] = self.pipeline_factory(lp)
            except Exception as exc:  # noqa: BLE001 - a guardrail that cannot be built
                message = f"{type(exc).__name__}: {exc}"
                if name == default_name or previous is not None:
                    issues.append(
                        PolicyIssue(str(lp.path), None, "<guardrails>", f"policy {name!r} cannot be built: {message}")
                    )
                else:
                    unavailable[name] = message
                    log.warning("policy %s is unavailable: %s", name, message)
        if issues:
            raise PolicyError(issues)
        generation = (old.generation + 1) if old else 1
        return PolicySnapshot(pipelines, unavailable, routing, default_name, generation, self.clock.time(), fingerprint)

    def _check_references(self, loaded: dict[str, LoadedPolicy], routing: Routing) -> list[PolicyIssue]:
        issues: list[PolicyIssue] = []
        rfile = str(self.routing_path)
        for name, lp in loaded.items():
            if lp.policy.shadow is not None and lp.policy.shadow not in loaded:
                issues.append(
                    PolicyIssue(
                        str(lp.path),
                        _field_line(lp.path, "shadow"),
                        "shadow",
                        f"unknown shadow policy {lp.policy.shadow!r}; known: {sorted(loaded)}",
                    )
                )
            if lp.policy.shadow == name:
                issues.append(
                    PolicyIssue(str(lp.path), _field_line(lp.path, "shadow"), "shadow", "a policy cannot shadow itself")
                )
        refs: list[tuple[str, str]] = []
        for tenant, route in routing.tenants.items():
            if route.policy:
                refs.append((f"tenants.{tenant}.policy", route.policy))
            refs.extend((f"tenants.{tenant}.allow", a) for a in route.allow if a != "*")
        for key in ("anonymous", "unknown_tenant"):
            route = getattr(routing, key)
            if route.policy:
                refs.append((f"{key}.policy", route.policy))
            refs.extend((f"{key}.allow", a) for a in route.allow if a != "*")
        refs.extend((f"models.{m}", p) for m, p in routing.models.items())
        for live, shadow in routing.shadow.items():
            refs.extend([(f"shadow.{live}", live), (f"shadow.{live}", shadow)])
        for where, name in refs:
            if name not in loaded:
                issues.append(
                    PolicyIssue(
                        rfile,
                        _routing_line(self.routing_path, where),
                        where,
                        f"unknown policy {name!r}; known: {sorted(loaded)}",
                    )
                )
        return issues

    # ------------------------------------------------------------------ matching

    def resolve(
        self,
        *,
        tenant: str | None = None,
        scopes: set[str] | None = None,
        model: str | None = None,
        requested: str | None = None,
    ) -> Resolution:
        """Choose the policy (and its shadow) for one request; see the module doc for the order.

        Args:
            tenant: The API key's tenant (``request.state.tenant``), None without auth.
            scopes: The API key's scopes; ``admin`` may name any policy.
            model: The requested model name, if any.
            requested: The policy named in the body, if any.

        Returns:
            The :class:`Resolution`.

        Raises:
            APIError: 403 ``policy_not_allowed`` when the caller may not choose
                ``requested``; 404 ``policy_not_found`` for an unknown policy;
                503 ``policy_unavailable`` for one whose guardrails could not be built.
        """
        snap = self.snapshot  # read once: everything below uses this one snapshot
        routing = snap.routing
        if tenant is None:
            route = routing.anonymous
        else:
            route = routing.tenants.get(tenant, routing.unknown_tenant)
        if route.policy:
            name, reason = route.policy, "tenant"
        elif model is not None and model in routing.models:
            name, reason = routing.models[model], "model"
        else:
            name, reason = snap.default, "default"
        if requested is not None and requested != name:
            allowed = "*" in route.allow or requested in route.allow or bool(scopes and "admin" in scopes)
            if not allowed:
                who = f"tenant {tenant!r}" if tenant is not None else "this caller"
                raise APIError(
                    403,
                    f"{who} may not choose policy {requested!r} (routing allows "
                    f"{sorted(route.allow) or 'none'}); leave greenlist.policy out to get {name!r}",
                    type="permission_error",
                    param="policy",
                    code="policy_not_allowed",
                )
            name, reason = requested, "explicit"
        pipeline = snap.pipelines.get(name)
        if pipeline is None:
            if name in snap.unavailable:
                raise APIError(
                    503,
                    f"policy {name!r} is unavailable: {snap.unavailable[name]}",
                    type="server_error",
                    param="policy",
                    code="policy_unavailable",
                )
            raise APIError(
                404,
                f"unknown policy {name!r}; this server runs {sorted(snap.pipelines)}",
                param="policy",
                code="policy_not_found",
            )
        shadow_name = snap.shadow_name(name)
        shadow = snap.pipelines.get(shadow_name) if shadow_name else None
        return Resolution(pipeline, shadow, reason, snap)

    # ------------------------------------------------------------------ watching

    def changed_on_disk(self) -> bool:
        """True when a policy or routing file changed since the last (attempted) load."""
        return self.fingerprint() != self._seen_fingerprint

    async def watch(self, interval_s: float = 2.0) -> None:
        """Poll the policy files every ``interval_s`` seconds and reload on change (run as a task; cancel to stop).

        A change is applied once the files have stayed the same for a short
        settle time (editors write in several steps). Rejected changes are
        logged and not retried until the files change again.
        """
        while True:
            await self.clock.sleep(interval_s)
            try:
                if not self.changed_on_disk():
                    continue
                first = self.fingerprint()
                await self.clock.sleep(min(0.25, interval_s))
                if self.fingerprint() != first:
                    continue  # still being written
                await asyncio.to_thread(self.reload)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("policy watcher error")

    def describe(self) -> dict[str, Any]:
        """JSON summary: live policies with versions, paths, shadows; unavailable ones; last reload error."""
        snap = self.snapshot
        return {
            "generation": snap.generation,
            "loaded_at": snap.loaded_at,
            "default": snap.default,
            "policies": [
                {
                    "name": n,
                    "version": p.version,
                    "path": str(p.loaded.path) if p.loaded.path else None,
                    "extends": p.policy.extends,
                    "shadow": snap.shadow_name(n),
                    "description": p.policy.description,
                }
                for n, p in sorted(snap.pipelines.items())
            ],
            "unavailable": snap.unavailable,
            "routing": snap.routing.model_dump(),
            "last_error": self.last_error,
            "last_attempt": self.last_attempt,
        }


def _metric_reload(result: str) -> None:
    try:
        from gateway.observability.metrics import POLICY_RELOADS

        POLICY_RELOADS.labels(result=result).inc()
    except Exception:  # noqa: BLE001 - metrics never break policy loading
        pass


def _metric_versions(snap: PolicySnapshot) -> None:
    try:
        from gateway.observability.metrics import set_policy_versions

        set_policy_versions(snap.versions())
    except Exception:  # noqa: BLE001
        pass
