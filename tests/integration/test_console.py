"""The /console page in real headless Chromium: live policies, recent decisions with filters, shadow vs live.

Uses the system Chromium (``apt-get install chromium``) driven by Playwright's
Python package; no browser is downloaded. A screenshot is saved to
``artifacts/console.png`` (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ARTIFACTS, ServerThread
from tests.trust_fixtures import make_gateway, policy_yaml


@pytest.fixture()
def console_server(tmp_path: Path) -> Iterator[tuple]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(policy_yaml("default", 0.5, shadow="candidate"))
    (policies / "candidate.yaml").write_text(policy_yaml("candidate", 0.0, extends="default"))
    gw = make_gateway(policies, f"sqlite:///{tmp_path / 'audit.db'}", policy_watch=False)
    from gateway.api.app import create_app

    with ServerThread(create_app(gw.settings, gateway=gw)) as srv:
        yield srv, gw
    gw.audit.close()


def test_console_in_headless_chromium(console_server, browser):
    srv, gw = console_server
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        for i, text in enumerate(["Have a lovely day.", "Thanks, that was helpful.", "You are a worthless idiot."]):
            r = c.post(
                "/v1/guardrails/check",
                json={"text": text, "direction": "input"},
                headers={"x-request-id": f"console-{i}"},
            )
            assert r.status_code == 200
        gw.audit.flush()
        live_decisions = {r["request_id"]: r["decision"] for r in gw.audit.query(shadow=False)}
        assert len(live_decisions) == 3 and "block" in live_decisions.values()
    import time

    deadline = time.time() + 20  # shadow checks run in the background
    while len(gw.audit.query(shadow=True)) < 3 and time.time() < deadline:
        gw.audit.flush()
        time.sleep(0.05)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{srv.url}/console", wait_until="load")
    assert page.title() == "Greenlist console"
    policies = page.locator("#policies tr").all_inner_texts()
    assert any("default" in row and gw.store.snapshot.pipelines["default"].version in row for row in policies)
    assert any("candidate" in row for row in policies)
    assert page.locator("#decisions tr").count() == 1 + 6  # header + 3 live + 3 shadow rows
    summary = page.locator("#shadow-summary").inner_text()
    assert "3 shadow decisions" in summary
    differ = sum(1 for d in live_decisions.values() if d != "block")  # the candidate blocks everything
    assert f"{differ} differ" in summary
    assert page.locator("#shadow-diffs tr").count() == 1 + differ
    page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
    # filter: blocked, live rows only, through the form
    page.select_option("select[name=action]", "block")
    page.select_option("select[name=shadow]", "live")
    page.click("#apply")
    page.wait_for_load_state("load")
    assert "action=block" in page.url
    rows = page.locator("#decisions tr").all_inner_texts()[1:]
    expected = sum(1 for d in live_decisions.values() if d == "block")
    assert len(rows) == expected and all("block" in r and "(shadow)" not in r for r in rows)
    page.screenshot(path=str(ARTIFACTS / "console-filtered.png"), full_page=True)
    assert (ARTIFACTS / "console.png").stat().st_size > 10_000
