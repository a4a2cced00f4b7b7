"""Shared fixtures: a real gateway on the embedded model, served over HTTP on loopback.

The model, watermark key and caches live in one session-wide ``GREENLIST_HOME``
(``$GREENLIST_TEST_HOME`` if set, so repeated local runs reuse the fp32 cache). A new home gets a fixed
watermark key (:data:`TEST_WATERMARK_SECRET`), so sampled generation under a seed gives the same text in
every run: with a random key per run, the embedded model's texts (and whether a 120-token tool call closes)
changed from run to run.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
# ../shared beside the clone (a git worktree one level deeper finds it one level further up)
SHARED = next(
    (p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "data").is_dir()),
    ROOT.parent / "shared" / "data",
)


def shared_path(*parts: str) -> Path:
    """Path under ``../shared/data``; skips the test with a reason when the folder is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (clone the project beside ../shared)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """A uvicorn server for ``app`` on a free loopback port, in a daemon thread."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("server failed to start; see the log above")
            time.sleep(0.1)
        raise TimeoutError("server did not start in 600 s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = ROOT / "artifacts"  # screenshots of browser tests (git-ignored)
TEST_WATERMARK_SECRET = hashlib.sha256(b"greenlist test watermark key").digest()


@pytest.fixture()
def browser():
    """A real headless Chromium (Debian's package) driven by Playwright's Python package; no browser download."""
    import shutil

    executable = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
    if executable is None:
        pytest.skip("Chromium not installed (apt-get install -y chromium); browser tests need a real browser")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (Python package only)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    from watermark.keys import KEY_FILE, create_key_file

    path = Path(os.environ.get("GREENLIST_TEST_HOME") or tmp_path_factory.mktemp("greenlist-home"))
    path.mkdir(parents=True, exist_ok=True)
    if not (path / KEY_FILE).exists():
        create_key_file(path / KEY_FILE, secret=TEST_WATERMARK_SECRET)
    os.environ["GREENLIST_HOME"] = str(path)
    return path


@pytest.fixture(scope="session")
def gateway(home):
    """One started gateway (default policy, embedded model) shared by the session."""
    from gateway.settings import Settings
    from gateway.state import Gateway

    return Gateway.start(Settings())


@pytest.fixture(scope="session")
def server(gateway) -> Iterator[ServerThread]:
    """The default gateway served over HTTP."""
    from gateway.api.app import create_app

    with ServerThread(create_app(gateway.settings, gateway=gateway)) as srv:
        yield srv


def generate_released(
    client: httpx.Client,
    min_tokens: int,
    max_tokens: int = 200,
    prompt: str = "Write a long story about a lighthouse keeper and a storm.",
) -> dict:
    """A sampled, watermarked chat completion of at least ``min_tokens`` tokens that the guardrails released.

    Sampled output can end early or trip an output guardrail (a toxicity false positive is measured
    elsewhere); this tries a few seeds and fails the test if none qualifies.
    """
    for seed in range(7, 12):
        resp = client.post(
            "/v1/chat/completions",
            json={
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 1.0,
                "seed": seed,
            },
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["choices"][0]["finish_reason"] != "content_filter" and body["usage"]["completion_tokens"] >= min_tokens:
            return body
    pytest.fail(f"no released completion of {min_tokens}+ tokens in 5 seeds")


@pytest.fixture()
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as c:
        yield c


from tests.agent_fixtures import agent_gateway, agent_stub, sdk, stub_state  # noqa: E402,F401 - agent API tests (issue 18)
from tests.reliability_fixtures import fast_gateway, stub_upstream  # noqa: E402,F401 - reliability tests (issue 7)
