"""Per-use-case policies: inheritance, validation with line numbers, matching, and hot reload under load."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.errors import APIError
from gateway.policy.schema import DEFAULT_POLICY_PATH, PolicyError, load_policy
from gateway.policy.store import PolicyStore
from tests.conftest import ServerThread
from tests.trust_fixtures import make_gateway, policy_yaml, write_atomic

POLICIES = DEFAULT_POLICY_PATH.parent


# ---------------------------------------------------------------------------------------------- inheritance


def test_extends_deep_merges_mappings_and_replaces_lists(tmp_path: Path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nrefusal_message: nope\nwatermark:\n  enabled: false\n  delta: 3.0\n"
        "audit:\n  store_text: true\ninput:\n  - type: toxicity\n    threshold: 0.5\n"
        "output:\n  - type: toxicity\n    threshold: 0.5\n  - type: toxicity\n    name: second\n    threshold: 0.9\n"
    )
    (tmp_path / "child.yaml").write_text(
        "extends: base\nwatermark:\n  delta: 5.0\noutput:\n  - type: toxicity\n    threshold: 0.2\n"
    )
    base, child = load_policy(tmp_path / "base.yaml"), load_policy(tmp_path / "child.yaml")
    p = child.policy
    assert p.name == "child"  # name is never inherited: the file's stem
    assert p.extends == "base" and [b.name for b in child.bases] == ["base.yaml"]
    assert p.refusal_message == "nope" and p.audit.store_text  # inherited scalars and mappings
    assert p.watermark.enabled is False and p.watermark.delta == 5.0  # deep merge: one key overridden
    assert [g.threshold for g in p.output] == [0.2]  # lists replaced whole
    assert [g.threshold for g in p.input] == [0.5]  # inherited list
    assert child.version != base.version
    # a change to the base changes the child's version, so reload picks it up
    before = child.version
    (tmp_path / "base.yaml").write_text((tmp_path / "base.yaml").read_text().replace("delta: 3.0", "delta: 4.0"))
    assert load_policy(tmp_path / "child.yaml").version != before


def test_extends_errors_name_file_and_line(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("name: b\nextends: a\n")
    with pytest.raises(PolicyError, match="cycle"):
        load_policy(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("name: c\n\nextends: missing\n")
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "c.yaml")
    assert (info.value.issues[0].line, info.value.issues[0].field) == (3, "extends")
    # an invalid base: reported on the child's extends line and at the base's own line
    (tmp_path / "bad.yaml").write_text("name: bad\ninput:\n  - type: toxicity\n    threshold: 7\n")
    (tmp_path / "d.yaml").write_text("# child\nextends: bad\n")
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "d.yaml")
    where = {(Path(i.file).name, i.line, i.field) for i in info.value.issues}
    assert ("d.yaml", 2, "extends") in where and ("bad.yaml", 4, "input.0.toxicity.threshold") in where
    # an error in the child after merging is reported at the child's line
    (tmp_path / "base.yaml").write_text("name: base\ninput: []\n")
    (tmp_path / "e.yaml").write_text("extends: base\nstreaming:\n  mode: sideways\n")
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "e.yaml")
    assert [(i.line, i.field) for i in info.value.issues] == [(3, "streaming.mode")]


def test_shipped_policies_are_valid_and_shaped_as_documented():
    loaded, routing, default = PolicyStore(POLICIES).validate()
    assert default == "default" and {"default", "factual-qa", "creative-writing", "kids"} <= set(loaded)
    kids = loaded["kids"].policy
    assert kids.extends == "default"
    assert max(g.threshold for g in kids.input) <= 0.2 and max(g.threshold for g in kids.output) <= 0.2
    fq = loaded["factual-qa"].policy
    cit = [g for g in fq.output if g.type == "citations"]
    assert cit and cit[0].action == "disclaim" and cit[0].threshold <= 0.01
    cw = loaded["creative-writing"].policy
    assert not [g for g in cw.output if g.type == "citations"] and [g for g in cw.output if g.type == "toxicity"]
    assert routing.tenants["kids-app"].policy == "kids"
    res = CliRunner().invoke(cli, ["policy", "check", str(POLICIES), str(POLICIES / "kids.yaml")])
    assert res.exit_code == 0, res.output
    assert "extends" in res.output


def test_store_validation_reports_references_with_lines(tmp_path: Path):
    (tmp_path / "default.yaml").write_text(policy_yaml("default", shadow="nobody"))
    (tmp_path / "other.yaml").write_text(policy_yaml("not-other"))
    (tmp_path / "routing.yaml").write_text("tenants:\n  acme:\n    policy: ghost\nmodels:\n  m: default\n")
    with pytest.raises(PolicyError) as info:
        PolicyStore(tmp_path).validate()
    got = {(Path(i.file).name, i.line, i.field) for i in info.value.issues}
    assert ("default.yaml", 2, "shadow") in got
    assert ("other.yaml", 1, "name") in got
    assert ("routing.yaml", 3, "tenants.acme.policy") in got
    res = CliRunner().invoke(cli, ["policy", "check", str(tmp_path)])
    assert res.exit_code == 1 and "routing.yaml:3: tenants.acme.policy" in res.output


# ---------------------------------------------------------------------------------------------- matching


@pytest.fixture()
def routed(tmp_path: Path) -> PolicyStore:
    for name in ("default", "kids", "creative", "candidate"):
        (tmp_path / f"{name}.yaml").write_text(policy_yaml(name, extends=None if name == "default" else "default"))
    (tmp_path / "routing.yaml").write_text(
        "tenants:\n  kids-app:\n    policy: kids\n    allow: []\n"
        "  research:\n    allow: [creative]\n"
        "anonymous:\n  allow: ['*']\n"
        "models:\n  story-model: creative\n"
        "shadow:\n  default: candidate\n"
    )
    store = PolicyStore(tmp_path)
    store.load()
    return store


def test_matching_order_and_permissions(routed: PolicyStore):
    r = routed.resolve
    assert (r(tenant="kids-app").pipeline.name, r(tenant="kids-app").reason) == ("kids", "tenant")
    # the tenant's policy wins over the model's
    assert r(tenant="kids-app", model="story-model").pipeline.name == "kids"
    assert (r(tenant="research", model="story-model").pipeline.name, r(model="story-model").reason) == (
        "creative",
        "model",
    )
    assert (r(tenant="research").pipeline.name, r(tenant="research").reason) == ("default", "default")
    assert r(tenant="research", requested="creative").reason == "explicit"
    assert r(tenant=None, requested="kids").pipeline.name == "kids"  # anonymous: allow '*'
    assert r(tenant="kids-app", requested="kids").pipeline.name == "kids"  # naming your own policy is fine
    for tenant, requested in (("kids-app", "default"), ("research", "kids"), ("unknown-tenant", "kids")):
        with pytest.raises(APIError) as info:
            r(tenant=tenant, requested=requested)
        assert (info.value.status, info.value.code) == (403, "policy_not_allowed")
    assert r(tenant="kids-app", scopes={"admin"}, requested="default").pipeline.name == "default"
    with pytest.raises(APIError) as info:
        r(requested="nope")
    assert (info.value.status, info.value.code) == (404, "policy_not_found")
    # shadow from the routing file
    res = r()
    assert res.pipeline.name == "default" and res.shadow is not None and res.shadow.name == "candidate"
    assert r(tenant="kids-app").shadow is None


def test_unbuildable_policy_is_unavailable_not_fatal(tmp_path: Path):
    (tmp_path / "default.yaml").write_text(policy_yaml("default"))
    (tmp_path / "cites.yaml").write_text("name: cites\noutput:\n  - type: citations\n    databases: [no-such-db]\n")
    store = PolicyStore(tmp_path)
    store.load()
    assert "cites" in store.snapshot.unavailable
    with pytest.raises(APIError) as info:
        store.resolve(requested="cites")
    assert (info.value.status, info.value.code) == (503, "policy_unavailable")


# ---------------------------------------------------------------------------------------------- hot reload

BENIGN = "Lighthouses guide ships safely along the coast at night."


def _hammer(url: str, stop: threading.Event, out: list, errors: list) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            try:
                r = c.post("/v1/guardrails/check", json={"text": BENIGN, "direction": "input"})
                body = r.json()
                out.append(
                    (
                        r.status_code,
                        body.get("policy", {}).get("version"),
                        body.get("decision"),
                        r.headers.get("x-greenlist-decision"),
                    )
                )
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))


def test_reload_valid_then_invalid_under_concurrent_requests(tmp_path: Path):
    policies = tmp_path / "policies"
    policies.mkdir()
    write_atomic(policies / "default.yaml", policy_yaml("default", 1.0))  # v1: allows the text
    gw = make_gateway(policies, f"sqlite:///{tmp_path / 'audit.db'}", policy_watch=False)
    v1 = gw.store.default.version
    from gateway.api.app import create_app

    results: list = []
    errors: list = []
    stop = threading.Event()
    with ServerThread(create_app(gw.settings, gateway=gw)) as srv:
        threads = [threading.Thread(target=_hammer, args=(srv.url, stop, results, errors)) for _ in range(4)]
        for t in threads:
            t.start()

        def wait_for(n: int) -> None:  # progress by completed requests, not wall time (CI machines are loaded)
            deadline = time.time() + 120
            while len(results) < n and time.time() < deadline and not errors:
                time.sleep(0.05)

        try:
            wait_for(12)
            write_atomic(policies / "default.yaml", policy_yaml("default", 0.0))  # v2: blocks everything
            r = httpx.post(f"{srv.url}/admin/policies/reload", timeout=60)
            assert r.status_code == 200 and r.json()["ok"] and r.json()["changed"] == ["default"], r.text
            v2 = r.json()["versions"]["default"]
            wait_for(len(results) + 12)
            n_before_invalid = len(results)
            write_atomic(
                policies / "default.yaml", policy_yaml("default", 0.0).replace("threshold: 0.0", "threshold: 3", 1)
            )
            r = httpx.post(f"{srv.url}/admin/policies/reload", timeout=60)
            assert r.status_code == 422 and not r.json()["ok"]
            assert any("default.yaml:4: input.0.toxicity.threshold" in e for e in r.json()["errors"]), r.json()
            wait_for(len(results) + 12)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        listing = httpx.get(f"{srv.url}/admin/policies").json()
    assert not errors, errors[:3]
    assert len(results) >= 36
    assert all(status == 200 for status, *_ in results), [r for r in results if r[0] != 200][:3]
    by_version = defaultdict(set)
    for _, version, decision, header in results:
        assert decision == header
        by_version[version].add(decision)
    assert set(by_version) == {v1, v2}  # nothing else was ever served
    assert by_version[v1] == {"allow"} and by_version[v2] == {"block"}  # no mixed decisions
    assert all(v == v2 for _, v, _, _ in results[n_before_invalid + 8 :])  # the invalid change never went live
    assert listing["policies"][0]["version"] == v2 and listing["last_error"]
    assert gw.pipeline.version == v2  # Gateway.pipeline follows the default
    gw.audit.flush()
    versions = {row["policy_version"] for row in gw.audit.query(limit=100_000)}
    assert versions == {v1, v2}
    gw.audit.close()


def test_file_watcher_applies_a_change_without_a_request(tmp_path: Path):
    policies = tmp_path / "policies"
    policies.mkdir()
    write_atomic(policies / "default.yaml", policy_yaml("default", 1.0))
    gw = make_gateway(policies, None, policy_watch=True)
    from gateway.api.app import create_app

    with ServerThread(create_app(gw.settings, gateway=gw)) as srv:
        c = httpx.Client(base_url=srv.url, timeout=30)
        assert c.post("/v1/guardrails/check", json={"text": BENIGN, "direction": "input"}).json()["decision"] == "allow"
        write_atomic(policies / "default.yaml", policy_yaml("default", 0.0))
        deadline = time.time() + 60
        while time.time() < deadline and gw.store.snapshot.generation == 1:
            time.sleep(0.1)
        assert gw.store.snapshot.generation == 2
        assert c.post("/v1/guardrails/check", json={"text": BENIGN, "direction": "input"}).json()["decision"] == "block"
        # an invalid edit is rejected by the watcher too; the last good version keeps serving
        write_atomic(policies / "default.yaml", "name: default\ninput: [oops\n")
        deadline = time.time() + 60
        while time.time() < deadline and not gw.store.last_error:
            time.sleep(0.1)
        assert gw.store.last_error and gw.store.snapshot.generation == 2
        assert c.post("/v1/guardrails/check", json={"text": BENIGN, "direction": "input"}).json()["decision"] == "block"
        c.close()


def test_tenant_routing_with_real_api_keys(tmp_path: Path):
    """Auth on: the auth middleware's tenant and scopes pick the policy; admin routes need the admin scope."""
    from gateway.api.app import create_app
    from gateway.security.keys import KeyStore

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(policy_yaml("default", 1.0))
    (policies / "kids.yaml").write_text(policy_yaml("kids", 0.0, extends="default"))
    (policies / "routing.yaml").write_text(
        "tenants:\n  kids-app:\n    policy: kids\n    allow: []\n  research:\n    allow: [kids]\n"
    )
    keys = tmp_path / "keys.json"
    store = KeyStore(keys)
    kid, _ = store.create("kids-app", ["moderate"])
    research, _ = store.create("research", ["moderate"])
    admin, _ = store.create("ops", ["admin"])
    gw = make_gateway(policies, None, policy_watch=False)
    gw.settings.auth = "on"
    gw.settings.api_keys_file = keys
    with ServerThread(create_app(gw.settings, gateway=gw)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:

        def check(token: str, **extra):
            return c.post(
                "/v1/guardrails/check",
                json={"text": BENIGN, "direction": "input", **extra},
                headers={"authorization": f"Bearer {token}"},
            )

        r = check(kid)
        assert r.status_code == 200 and r.json()["policy"]["name"] == "kids" and r.json()["decision"] == "block"
        assert check(kid, policy="default").json()["error"]["code"] == "policy_not_allowed"
        assert check(research).json()["policy"]["name"] == "default"
        assert check(research, policy="kids").json()["policy"]["name"] == "kids"
        assert check(admin, policy="kids").json()["policy"]["name"] == "kids"
        assert c.post("/admin/policies/reload", headers={"authorization": f"Bearer {kid}"}).status_code == 403
        assert c.get("/console", headers={"authorization": f"Bearer {kid}"}).status_code == 403
        assert c.post("/admin/policies/reload", headers={"authorization": f"Bearer {admin}"}).status_code == 200
        assert c.get("/console", headers={"authorization": f"Bearer {admin}"}).status_code == 200


def test_identical_guardrail_entries_are_shared_across_policies_and_reloads(tmp_path: Path):
    (tmp_path / "default.yaml").write_text(policy_yaml("default", 0.5))
    (tmp_path / "child.yaml").write_text("extends: default\ndescription: same guardrails\n")
    (tmp_path / "strict.yaml").write_text(policy_yaml("strict", 0.1))
    store = PolicyStore(tmp_path)
    store.load()
    pipes = store.snapshot.pipelines
    assert (
        pipes["child"].guardrails[next(iter(pipes["child"].guardrails))][0]
        is pipes["default"].guardrails[next(iter(pipes["default"].guardrails))][0]
    )
    assert len(store.guardrail_cache) == 2  # threshold 0.5 entry (input+output identical) and 0.1
    built = store.guardrail_cache.built
    (tmp_path / "strict.yaml").write_text(policy_yaml("strict", 0.2))
    assert store.reload().changed == ["strict"]
    assert store.guardrail_cache.built == built + 1  # only the changed entry was constructed
    assert len(store.guardrail_cache) == 2  # the 0.1 entry was dropped
