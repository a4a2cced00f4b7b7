"""Two `greenlist serve` replicas on loopback sharing a secrets directory, a real redis-server and a real
PostgreSQL (issue #19, "Must show"): watermark verification and certificates across replicas, one rate limit
for both, policy edits reaching both, and an audit log that loses nothing while PostgreSQL restarts.

The replicas are real processes (``python3 -m gateway.cli serve``, this checkout's code) in front of a stub
OpenAI-compatible upstream that writes watermarked text with the shared key, as a vLLM server running
Greenlist's logits processor with the same key file would. The full audit run (2,000 requests, PostgreSQL
down for 10 s) is ``GREENLIST_LONG_TESTS=1``; the suite runs 400 requests with PostgreSQL down for 4 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from tests.cluster_fixtures import Postgres, postgres_server, redis_server
from tests.conftest import ROOT, ServerThread, free_port
from tests.trust_fixtures import policy_yaml, write_atomic
from tests.watermark_fixtures import green_text

RATE = 12  # requests per minute for the shared public-verify limit
LONG = os.environ.get("GREENLIST_LONG_TESTS") == "1"


def watermarked_text(key_file: Path, tokenizer: Any, n: int = 80, seed: int = 0) -> str:
    """Text whose every token is green under the key set's active key (what δ → ∞ would generate)."""
    from watermark.keys import read_key_file

    return green_text(read_key_file(key_file).active.scheme(0.25, "selfhash"), tokenizer, n, seed)


def make_upstream(text: str) -> FastAPI:
    """A stub OpenAI-compatible upstream that always answers ``text``."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        await request.json()
        return {
            "id": "stub",
            "object": "chat.completion",
            "model": "stub-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 80, "total_tokens": 85},
        }

    return app


class Replica:
    """One `greenlist serve` process."""

    def __init__(self, name: str, base: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = base / name
        home.mkdir()
        (home / "models").symlink_to(Path(os.environ["GREENLIST_HOME"]) / "models")  # the tokenizer cache
        self.log = (base / f"{name}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT,
            env={**env, "GREENLIST_HOME": str(home)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"replica on {self.url} not ready in {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `python3 -m gateway.cli ARGS` from this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, home) -> Iterator[dict[str, Any]]:
    from gateway.backends.loading import load_tokenizer

    base = tmp_path_factory.mktemp("cluster")
    tokenizer = load_tokenizer(None, home)  # fills $GREENLIST_HOME/models once; the replicas share it
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIST_")}
    res = cli("secrets", "init", str(base / "secrets"), env=env)
    assert res.returncode == 0, res.stderr
    policies = base / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(policy_yaml("default", 1.0))
    text = watermarked_text(base / "secrets" / "watermark_keys.json", tokenizer)
    with redis_server() as redis_url, postgres_server() as pg, ServerThread(make_upstream(text)) as upstream:
        env.update(
            {
                "GREENLIST_SECRETS_DIR": str(base / "secrets"),
                "GREENLIST_REDIS_URL": redis_url,
                "GREENLIST_AUDIT_URL": pg.url,
                "GREENLIST_BACKEND": "openai",
                "GREENLIST_UPSTREAM_BASE_URL": upstream.url + "/v1",
                "GREENLIST_UPSTREAM_MODEL": "stub-model",
                "GREENLIST_SERVED_MODEL_NAME": "stub-model",
                "GREENLIST_POLICY": str(policies / "default.yaml"),
                "GREENLIST_POLICY_WATCH_INTERVAL_S": "0.5",
                "GREENLIST_AUTH": "on",
                "GREENLIST_API_KEYS_FILE": str(base / "api_keys.json"),
                "GREENLIST_VERIFY_PUBLIC": "true",
                "GREENLIST_VERIFY_PUBLIC_RATE_PER_MIN": str(RATE),
                "GREENLIST_VERIFY_PUBLIC_BURST": str(RATE),
                "GREENLIST_TRUSTED_PROXIES": "127.0.0.1",
                "GREENLIST_AUDIT_QUEUE_SIZE": "200",
            }
        )
        res = cli("keys", "create", "--tenant", "ops", "--scopes", "generate,moderate,verify,admin", env=env)
        assert res.returncode == 0, res.stderr
        token = res.stdout.strip().splitlines()[0]
        replicas = [Replica(name, base, env) for name in ("a", "b")]
        try:
            for r in replicas:
                r.wait_ready()
            yield {
                "a": replicas[0],
                "b": replicas[1],
                "env": env,
                "pg": pg,
                "policies": policies,
                "base": base,
                "headers": {"Authorization": f"Bearer {token}"},
            }
        finally:
            for r in replicas:
                r.stop()


def test_a_replica_without_shared_keys_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIST_")}
    env.update(
        {
            "GREENLIST_HOME": str(tmp_path),
            "GREENLIST_REDIS_URL": "redis://127.0.0.1:1/0",
            "GREENLIST_BACKEND": "openai",
            "GREENLIST_UPSTREAM_BASE_URL": "http://127.0.0.1:1/v1",
        }
    )
    res = cli("serve", "--port", str(free_port()), env=env)
    assert res.returncode == 2 and "greenlist secrets init DIR" in res.stderr and "GREENLIST_SECRETS_DIR" in res.stderr
    assert not (tmp_path / "watermark_keys.json").exists() and not (tmp_path / "signing_key.pem").exists()


def test_text_from_a_verifies_on_b_and_certificates_cross_check(cluster, tmp_path):
    a, b, h = cluster["a"], cluster["b"], cluster["headers"]
    keys_a = httpx.get(a.url + "/v1/watermark/keys").json()
    keys_b = httpx.get(b.url + "/v1/watermark/keys").json()
    assert keys_a == keys_b  # same key ids, same signing key
    reply = httpx.post(
        a.url + "/v1/chat/completions",
        headers=h,
        timeout=60,
        json={"model": "stub-model", "messages": [{"role": "user", "content": "Write something."}]},
    )
    assert reply.status_code == 200, reply.text
    text = reply.json()["choices"][0]["message"]["content"]
    on_b = httpx.post(b.url + "/v1/watermark/verify", headers=h, json={"text": text}, timeout=60).json()
    assert on_b["watermarked"] and on_b["key_id"] == keys_a["active_watermark_key"]
    cert = httpx.post(
        a.url + "/v1/watermark/verify", headers=h, json={"text": text, "certificate": True}, timeout=60
    ).json()["certificate"]
    from watermark.certificate import check_certificate

    assert check_certificate(cert, text, [k["public_key"] for k in keys_b["signing_keys"]])[0]  # B's published key
    exported = cli("keys", "export-public", "--format", "b64", env=cluster["env"])
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "cert.json").write_text(json.dumps(cert))

    def verify_certificate(of: str) -> Any:
        (tmp_path / "text.txt").write_text(of)
        args = ("verify-certificate", str(tmp_path / "cert.json"), str(tmp_path / "text.txt"))
        return cli(*args, "--public-key", exported.stdout.strip(), env=cluster["env"])

    checked = verify_certificate(text)
    assert checked.returncode == 0, checked.stderr
    assert verify_certificate(text + " altered").returncode == 1


def test_one_rate_limit_across_both_replicas(cluster):
    a, b = cluster["a"], cluster["b"]
    client = {"X-Forwarded-For": "203.0.113.77"}  # 127.0.0.1 is the trusted proxy: the limit is per this address
    codes = []
    for i in range(3 * RATE):
        r = httpx.post(
            (a if i % 2 else b).url + "/v1/watermark/verify", json={"text": "hello there"}, headers=client, timeout=30
        )
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(codes) <= {200, 429}
    assert RATE - 1 <= codes.count(200) <= RATE + 1, codes
    other = httpx.post(
        a.url + "/v1/watermark/verify", json={"text": "hello"}, headers={"X-Forwarded-For": "203.0.113.8"}
    )
    assert other.status_code == 200  # another client has its own bucket


def test_policy_edit_reaches_both_replicas_within_10_s(cluster):
    a, b, h = cluster["a"], cluster["b"], cluster["headers"]
    before = {r.url: httpx.get(r.url + "/admin/policies", headers=h).json() for r in (a, b)}
    old = {u: next(p["version"] for p in d["policies"] if p["name"] == "default") for u, d in before.items()}
    write_atomic(cluster["policies"] / "default.yaml", policy_yaml("default", 0.99))
    start = time.time()
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.time() - start < 10:
        for r in (a, b):
            data = httpx.get(r.url + "/admin/policies", headers=h).json()
            version = next(p["version"] for p in data["policies"] if p["name"] == "default")
            if version != old[r.url] and r.url not in seen:
                seen[r.url] = time.time() - start
        time.sleep(0.2)
    assert len(seen) == 2, f"picked up by {seen} only"
    assert max(seen.values()) < 10


def test_audit_loses_nothing_across_a_postgresql_restart(cluster):
    a, b, h, pg = cluster["a"], cluster["b"], cluster["headers"], cluster["pg"]
    total, down_s = (2000, 10.0) if LONG else (400, 4.0)
    tag = f"durability-{time.time_ns()}"
    sent = []

    def one(i: int) -> int:
        r = httpx.post(
            (a if i % 2 else b).url + "/v1/guardrails/check",
            headers={**h, "x-request-id": f"{tag}-{i}"},
            json={"text": f"request number {i} about lighthouses", "direction": "input"},
            timeout=120,
        )
        return r.status_code

    def stop_then_start(pg: Postgres) -> None:
        time.sleep(1.0)
        pg.stop()
        time.sleep(down_s)
        pg.start()

    with ThreadPoolExecutor(8) as pool:
        outage = pool.submit(stop_then_start, pg)
        sent = list(pool.map(one, range(total)))
        outage.result()
    assert sent == [200] * total
    from sqlalchemy import create_engine, text

    engine = create_engine(pg.url)
    deadline = time.time() + 120
    while True:
        with engine.connect() as conn:
            n, distinct = conn.execute(
                text("SELECT count(*), count(DISTINCT request_id) FROM greenlist_decisions WHERE request_id LIKE :t"),
                {"t": tag + "-%"},
            ).one()
        if n >= total or time.time() > deadline:
            break
        time.sleep(0.5)
    engine.dispose()
    assert (n, distinct) == (total, total)
    metrics = httpx.get(a.url + "/metrics", headers=h).text + httpx.get(b.url + "/metrics", headers=h).text
    assert "greenlist_audit_spilled_total" in metrics
