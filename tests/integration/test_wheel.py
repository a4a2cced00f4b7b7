"""The built wheel, installed into a fresh virtual environment outside the checkout, serves with its packaged
default policy (issue #19).

The venv is made with ``--system-site-packages`` so that the dependencies come from this interpreter
(installing torch, transformers & co. again would take many minutes and the network); Greenlist itself is
installed from the wheel with ``--no-deps`` into the venv, which shadows any other install, and the server
runs from a folder outside the checkout, so nothing of the checkout (``policies/``) can be found by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, ServerThread, free_port
from tests.reliability_fixtures import STUB_MODEL, chat_body, make_stub


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_serves_the_packaged_default_policy(tmp_path, home):
    from gateway.backends.loading import load_tokenizer

    load_tokenizer(None, home)  # the tokenizer cache the installed server will find in its home
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        check=True,
        timeout=600,
        cwd=work,
    )
    wheel = next(dist.glob("greenlist-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # the dependencies come from the test's own environment (a .pth line is appended to sys.path after the new
    # venv's site-packages, so the wheel installed there shadows the editable checkout; `--system-site-packages`
    # would give the base interpreter's packages, which a fresh machine does not have)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test_env_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        timeout=600,
        cwd=work,
    )
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import gateway.policy.schema as s; print(s.DEFAULT_POLICY_PATH)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    packaged = Path(where.stdout.strip())
    assert packaged.is_file() and str(packaged).startswith(str(venv)), packaged  # inside the installed wheel
    assert packaged.parent.name == "bundled_policies"

    gl_home = tmp_path / "home"
    gl_home.mkdir()
    (gl_home / "models").symlink_to(home / "models")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIST_") and k != "PYTHONPATH"}
    env.update(
        {
            "GREENLIST_HOME": str(gl_home),
            "GREENLIST_UPSTREAM_MODEL": STUB_MODEL,
            "GREENLIST_SERVED_MODEL_NAME": STUB_MODEL,
        }
    )
    app = make_stub()
    port = free_port()
    with ServerThread(app) as stub, (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [
                str(venv / "bin" / "greenlist"),
                "serve",
                "--backend",
                "openai",
                "--upstream-base-url",
                f"{stub.url}/ok/v1",
                "--port",
                str(port),
            ],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + 300
            while time.time() < deadline:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            policies = httpx.get(url + "/admin/policies").json()
            default = next(p for p in policies["policies"] if p["name"] == "default")
            assert default["path"] == str(packaged)
            reply = httpx.post(url + "/v1/chat/completions", json=chat_body(), timeout=120)
            assert reply.status_code == 200, reply.text
            assert reply.json()["greenlist"]["policy"]["name"] == "default"
            assert app.state.data["hits"]["ok"] >= 1
        finally:
            proc.terminate()
            proc.wait(timeout=60)
