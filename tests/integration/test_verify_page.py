"""The verification page in real headless Chromium: paste, verify, see the verdict, colours and certificate.

Uses the system Chromium driven by Playwright's Python package (no browser
download); the screenshot goes to ``artifacts/verify-page.png`` (git-ignored).
"""

from __future__ import annotations

import json
import math

from greenlist.normalize import normalize
from tests.conftest import ARTIFACTS, generate_released


def test_verify_page_in_headless_chromium(server, client, browser):
    text = generate_released(client, min_tokens=80, max_tokens=120, prompt="Write a long story about a fox.")[
        "choices"
    ][0]["message"]["content"]
    page = browser.new_page(viewport={"width": 1200, "height": 1100})
    page.goto(f"{server.url}/verify", wait_until="load")
    page.fill("#text", text)
    page.click("#go")
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#verdict").startswith("Watermarked")
    z = float(page.inner_text("#z").split()[0])
    assert z >= 4
    # the colours shown are the ones the test scored: their counts give the displayed z-score (γ = 0.25)
    green, red = page.locator("#tokens span.green").count(), page.locator("#tokens span.red").count()
    total = green + red
    assert abs((green - 0.25 * total) / math.sqrt(total * 0.25 * 0.75) - z) < 0.01, (green, red, z)
    # the page shows the text that was scored: the input after the verifier's normalisation (NFC, homoglyphs
    # folded), which differs from the input when the model emits look-alike letters (e.g. Cyrillic "серу")
    assert page.inner_text("#tokens").replace("\n", "") == normalize(text, "NFC").replace("\n", "")
    with page.expect_download() as info:
        page.click("#download")
    cert = json.loads(open(info.value.path()).read())
    assert cert["certificate"]["verdict"] == "watermarked" and cert["signature"]["algorithm"] == "Ed25519"
    page.screenshot(path=str(ARTIFACTS / "verify-page.png"), full_page=True)

    page.fill(
        "#text",
        "It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief.",
    )
    page.click("#go")
    page.wait_for_function("document.querySelector('#verdict').textContent.startsWith('No watermark')")
    page.fill("#text", "")
    page.click("#go")
    page.wait_for_function("document.querySelector('#error').textContent.length > 0")
