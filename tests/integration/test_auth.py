"""API keys and scopes: hashed store, CLI, middleware on every route kind, public verify rate limit."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway.security.auth import has_scope, is_loopback, required_scope
from gateway.security.keys import KeyStore, hash_token
from gateway.security.ratelimit import TokenBucket
from tests.reliability_fixtures import assert_openai_error, chat_body, gateway_with


def test_store_keeps_only_hashes(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    token, key = store.create("acme", ["generate", "verify"], name="ci")
    raw = (tmp_path / "keys.json").read_text()
    assert token not in raw and token.split("_", 2)[2] not in raw
    assert key.sha256 == hash_token(token) and key.sha256 in raw
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    assert store.authenticate(token).tenant == "acme"
    assert store.authenticate(token + "x") is None
    assert store.authenticate("gl_000000000000_nope") is None
    assert store.authenticate("") is None
    store.revoke(key.key_id)
    assert store.authenticate(token) is None
    assert [k.revoked is not None for k in KeyStore(tmp_path / "keys.json").keys()] == [True]
    with pytest.raises(ValueError):
        store.create("acme", ["root"])
    with pytest.raises(ValueError):
        store.create("  ", ["verify"])


def test_scope_rules():
    assert required_scope("/v1/chat/completions") == "generate"
    assert required_scope("/v1/moderations") == "moderate"
    assert required_scope("/v1/watermark/verify") == "verify"
    assert required_scope("/v1/watermark/detail") == "verify:detail"
    assert required_scope("/v1/policies/reload") == "admin"
    assert has_scope(frozenset({"admin"}), "generate")
    assert has_scope(frozenset({"verify:detail"}), "verify")
    assert not has_scope(frozenset({"verify"}), "verify:detail")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_token_bucket():
    bucket = TokenBucket(rate_per_s=1.0, burst=2)
    assert bucket.take("a", now=0.0) == 0 and bucket.take("a", now=0.0) == 0
    assert bucket.take("a", now=0.0) == pytest.approx(1.0)
    assert bucket.take("b", now=0.0) == 0  # per client
    assert bucket.take("a", now=1.5) == 0  # refilled


def test_keys_cli(tmp_path):
    from gateway.cli import app

    runner = CliRunner()
    path = str(tmp_path / "k.json")
    out = runner.invoke(
        app, ["keys", "create", "--tenant", "acme", "--scopes", "generate,verify:detail", "--file", path]
    )
    assert out.exit_code == 0, out.output
    token = out.stdout.strip().splitlines()[0]
    assert token.startswith("gl_")
    listing = runner.invoke(app, ["keys", "list", "--file", path])
    key_id = token.split("_")[1]
    assert key_id in listing.stdout and "active" in listing.stdout and token not in listing.stdout
    assert runner.invoke(app, ["keys", "revoke", key_id, "--file", path]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list", "--file", path]).stdout
    assert runner.invoke(app, ["keys", "revoke", "nope", "--file", path]).exit_code == 1
    assert runner.invoke(app, ["keys", "create", "--tenant", "x", "--scopes", "bogus", "--file", path]).exit_code == 2


def _app(gw, tmp_path, **settings):
    from gateway.api.app import create_app

    settings = gw.settings.model_copy(update={"api_keys_file": tmp_path / "keys.json", **settings})
    app = create_app(settings, gateway=gateway_with(gw))

    @app.get("/admin/whoami")
    async def whoami(request: Request) -> dict:
        return {"tenant": request.state.tenant, "scopes": sorted(request.state.scopes), "key_id": request.state.key_id}

    return app


def test_auth_off_on_loopback_without_keys(fast_gateway, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="greenlist.auth"):
        app = _app(fast_gateway, tmp_path)
    assert "AUTHENTICATION IS OFF" in caplog.text
    with TestClient(app) as c:
        who = c.get("/admin/whoami").json()
        assert who["tenant"] == "default" and "admin" in who["scopes"] and who["key_id"] is None
        assert c.post("/v1/moderations", json={"input": "hello"}).status_code == 200


def test_auth_on_beyond_loopback(fast_gateway, tmp_path):
    with TestClient(_app(fast_gateway, tmp_path, host="0.0.0.0")) as c:
        assert_openai_error(c.post("/v1/moderations", json={"input": "hi"}), 401, "missing_api_key")
        assert c.get("/healthz").status_code == 200  # public
    with TestClient(_app(fast_gateway, tmp_path, host="0.0.0.0", auth="off")) as c:
        assert c.post("/v1/moderations", json={"input": "hi"}).status_code == 200


def test_scopes_per_route(fast_gateway, tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    gen, _ = store.create("acme", ["generate"])
    mod, _ = store.create("acme", ["moderate"])
    ver, _ = store.create("beta", ["verify"])
    adm, adm_key = store.create("ops", ["admin"])
    with TestClient(_app(fast_gateway, tmp_path)) as c:  # loopback, but keys exist: auth on

        def call(token, method, path, **kw):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return c.request(method, path, headers=headers, **kw)

        assert_openai_error(call(None, "POST", "/v1/moderations", json={"input": "hi"}), 401, "missing_api_key")
        assert_openai_error(
            call("gl_bogus_token", "POST", "/v1/moderations", json={"input": "hi"}), 401, "invalid_api_key"
        )
        r = c.post("/v1/moderations", json={"input": "hi"}, headers={"Authorization": "Basic abc"})
        assert_openai_error(r, 401, "missing_api_key")
        routes = {
            "generate": ("POST", "/v1/chat/completions", {"json": chat_body(max_tokens=8)}),
            "moderate": ("POST", "/v1/moderations", {"json": {"input": "hi"}}),
            "verify": ("POST", "/v1/watermark/verify", {"json": {"text": "Some text to verify here."}}),
            "admin": ("GET", "/admin/whoami", {}),
        }
        tokens = {"generate": gen, "moderate": mod, "verify": ver, "admin": adm}
        for scope, (method, path, kw) in routes.items():
            for holder, token in tokens.items():
                r = call(token, method, path, **kw)
                if holder == scope or holder == "admin":
                    assert r.status_code == 200, (holder, path, r.text)
                else:
                    err = assert_openai_error(r, 403, "insufficient_scope")
                    assert scope in err["message"]
        assert call(gen, "GET", "/v1/models").status_code == 200  # any valid key
        who = call(adm, "GET", "/admin/whoami").json()
        assert who == {"tenant": "ops", "scopes": ["admin"], "key_id": adm_key.key_id}
        store.revoke(adm_key.key_id)
        c.app.state.auth.store._checked = 0  # skip the 1 s re-read interval
        assert_openai_error(call(adm, "GET", "/admin/whoami"), 401, "invalid_api_key")


def test_public_verify_is_rate_limited(fast_gateway, tmp_path):
    KeyStore(tmp_path / "keys.json").create("acme", ["generate"])
    app = _app(fast_gateway, tmp_path, verify_public=True, verify_public_burst=3, verify_public_rate_per_min=1)
    with TestClient(app) as c:
        codes = [c.post("/v1/watermark/verify", json={"text": "hello world text"}).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = c.post("/v1/watermark/verify", json={"text": "hello world text"})
        assert_openai_error(r, 429, "rate_limit_exceeded")
        assert int(r.headers["retry-after"]) >= 1
        assert_openai_error(c.post("/v1/moderations", json={"input": "hi"}), 401)  # only verify is public
