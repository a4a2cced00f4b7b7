"""Watermark verification third parties can rely on: certificates, rotation, WinMax, normalisation, detail, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from tests.conftest import generate_released, shared_path
from watermark.certificate import check_certificate
from watermark.keys import KeyRing, WatermarkKey
from watermark.verifier import Verifier


@pytest.fixture(scope="module")
def generated(client_module):
    """About 200 watermarked tokens from the gateway."""
    return generate_released(client_module, min_tokens=150)["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def client_module(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def human():
    return [json.loads(line)["text"] for line in shared_path("human_text", "british_novels.jsonl").open()]


def verify(client, text, **flags):
    resp = client.post("/v1/watermark/verify", json={"text": text, **flags})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_certificate_round_trip(client_module, generated, tmp_path):
    result = verify(client_module, generated, certificate=True)
    cert = result["certificate"]
    assert cert["certificate"]["verdict"] == "watermarked" == result["verdict"]
    assert cert["certificate"]["z_score"] == result["z_score"]
    assert {"key_id", "scheme", "text_sha256", "issued_at", "p_value", "num_tokens_scored"} <= set(cert["certificate"])
    published = client_module.get("/v1/watermark/keys").json()
    assert published["signing_keys"][0]["public_key"] == cert["signature"]["public_key"]
    assert "secret" not in json.dumps(published)
    trusted = [published["signing_keys"][0]["public_key"]]
    assert check_certificate(cert, generated, trusted)[0]
    assert check_certificate(cert, generated + "\n")[0]  # surrounding white space is not part of the hash
    assert not check_certificate(cert, generated.replace(" the ", " a ", 1) + " extra")[0]
    forged = json.loads(json.dumps(cert))
    forged["certificate"]["verdict"] = "not_watermarked"
    assert "invalid signature" in check_certificate(forged, generated)[1]
    assert not check_certificate(cert, generated, ["AAAA"])[0]

    cert_file, text_file, forged_file = tmp_path / "c.json", tmp_path / "t.txt", tmp_path / "f.json"
    cert_file.write_text(json.dumps(cert))
    text_file.write_text(generated)
    forged_file.write_text(json.dumps(forged))
    runner = CliRunner()
    assert runner.invoke(cli, ["verify-certificate", str(cert_file), str(text_file)]).exit_code == 0
    assert (
        runner.invoke(cli, ["verify-certificate", str(cert_file), str(text_file), "--public-key", trusted[0]]).exit_code
        == 0
    )
    assert runner.invoke(cli, ["verify-certificate", str(forged_file), str(text_file)]).exit_code == 1
    text_file.write_text("some other text entirely")
    assert runner.invoke(cli, ["verify-certificate", str(cert_file), str(text_file)]).exit_code == 1


def test_plain_python_recipe_from_docs(client_module, generated):
    """The few lines documented in watermark/certificate.py work as written."""
    import base64
    import hashlib
    import unicodedata

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    cert = verify(client_module, generated, certificate=True)["certificate"]
    payload = json.dumps(cert["certificate"], sort_keys=True, separators=(",", ":")).encode()
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(cert["signature"]["public_key"]))
    key.verify(base64.b64decode(cert["signature"]["value"]), payload)
    text = unicodedata.normalize("NFC", generated)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").strip()
    assert hashlib.sha256(text.encode()).hexdigest() == cert["certificate"]["text_sha256"]


def test_homoglyph_and_zero_width_evasion(client_module, generated):
    plain = verify(client_module, generated)
    cyrillic = generated.replace("a", "\u0430")  # every Latin "a" swapped for Cyrillic "а"
    assert cyrillic != generated
    swapped = verify(client_module, cyrillic)
    assert swapped["watermarked"] and abs(swapped["z_score"] - plain["z_score"]) < 0.5
    zero_width = " \u200b".join(generated.split(" ", 40))
    assert verify(client_module, zero_width)["watermarked"]


def test_detail_colours_every_token(client_module, generated):
    result = verify(client_module, generated, detail=True)
    tokens = result["tokens"]
    statuses = {t["status"] for t in tokens}
    assert statuses <= {"green", "red", "ignored", "context"} and "green" in statuses
    assert sum(t["status"] == "green" for t in tokens) == result["num_green_tokens"]
    assert sum(t["status"] in ("green", "red") for t in tokens) == result["num_tokens_scored"]
    norm = result["normalized_text"]
    assert all(norm[t["start"] : t["end"]] == t["text"] for t in tokens)


def test_detail_needs_scope_when_auth_is_on(gateway):
    from fastapi.testclient import TestClient
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    from gateway.api.app import create_app

    async def scopes(request, call_next):  # innermost: what auth sets for a key with only "verify"
        request.state.scopes = frozenset({"verify"})
        return await call_next(request)

    app = create_app(gateway.settings, gateway=gateway)
    app.user_middleware.append(Middleware(BaseHTTPMiddleware, dispatch=scopes))

    with TestClient(app) as client:
        resp = client.post("/v1/watermark/verify", json={"text": "hello " * 30, "detail": True})
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "insufficient_scope"
        assert client.post("/v1/watermark/verify", json={"text": "hello " * 30}).status_code == 200


def test_windowed_detection_finds_pasted_paragraph(client_module, generated, human):
    essay_parts = [h for h in human[:40]]
    before, after = " ".join(essay_parts[:4]), " ".join(essay_parts[4:8])
    mixed = f"{before} {generated} {after}"
    start = len(before) + 1
    end = start + len(generated)
    result = verify(client_module, mixed, windowed=True)
    assert result["windowed"]["watermarked"], result["windowed"]
    spans = result["spans"]
    assert spans
    covered = sum(max(0, min(end, s["end"]) - max(start, s["start"])) for s in spans)
    outside = sum(s["end"] - s["start"] for s in spans) - covered
    assert covered >= 0.6 * len(generated) and outside <= 0.25 * len(generated)
    assert result["windowed"]["winmax_z"] >= result["windowed"]["z_threshold"] > 4.0


def test_windowed_human_text_false_positive_rate(client_module, human):
    """WinMax is calibrated to FPR 1e-3 per text: over ~900 human texts of ~900 tokens expect about one.

    At most 5 allowed: P(X >= 6) < 1e-3 for a Poisson count with mean 0.92.
    """
    texts = [" ".join(human[i : i + 6]) for i in range(0, len(human) - 6, 6)]
    assert len(texts) >= 900
    flagged = sum(verify(client_module, t, windowed=True)["windowed"]["watermarked"] for t in texts)
    assert flagged <= 5, f"{flagged} of {len(texts)} human texts flagged by WinMax"


def test_rotation_keeps_old_text_verifiable_with_bonferroni(gateway, generated):
    old = gateway.verifier
    fresh = WatermarkKey("wm-new", secret=b"n" * 32)
    ring = KeyRing(active=fresh, keys=(fresh, *old.keyring.keys))
    rotated = Verifier(ring, old.tokenizer, old.tokenizer_name, old.gamma, old.seeding_scheme, signer=old.signer)
    single, both = old.verify(generated), rotated.verify(generated)
    assert both["watermarked"] and both["key_id"] == old.keyring.active.key_id and both["keys_tried"] == 2
    assert both["p_value"] == pytest.approx(min(1.0, 2 * single["p_value"]))
    retired = KeyRing(active=fresh, keys=(fresh, *(replace(k, retired=True) for k in old.keyring.keys)))
    gone = Verifier(retired, old.tokenizer, old.tokenizer_name, old.gamma, old.seeding_scheme).verify(generated)
    assert gone["keys_tried"] == 1 and not gone["watermarked"]


def test_cli_verify(generated, tmp_path, home):
    path = tmp_path / "t.txt"
    path.write_text(generated)
    runner = CliRunner()
    res = runner.invoke(cli, ["verify", str(path)])
    assert res.exit_code == 0 and res.output.startswith("watermarked")
    res = runner.invoke(cli, ["verify", str(path), "--json"])
    assert json.loads(res.output)["watermarked"] is True
    path.write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 3)
    assert runner.invoke(cli, ["verify", str(path)]).exit_code == 1
    assert runner.invoke(cli, ["verify", str(tmp_path / "missing.txt")]).exit_code == 2


def test_watermark_keys_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENLIST_HOME", str(tmp_path))
    monkeypatch.delenv("GREENLIST_WATERMARK_KEY", raising=False)
    runner = CliRunner()
    first = runner.invoke(cli, ["watermark-keys", "list"]).output.split()[0]
    new = runner.invoke(cli, ["watermark-keys", "rotate"]).output.strip()
    listing = runner.invoke(cli, ["watermark-keys", "list"]).output
    assert f"{new}\tkeyed\tactive" in listing and f"{first}\tkeyed\tverifying" in listing
    assert runner.invoke(cli, ["watermark-keys", "retire", new]).exit_code == 1  # active key
    assert runner.invoke(cli, ["watermark-keys", "retire", first]).exit_code == 0
    assert f"{first}\tkeyed\tretired" in runner.invoke(cli, ["watermark-keys", "list"]).output
    assert "secret" not in listing


def test_bad_verify_requests(client_module):
    assert client_module.post("/v1/watermark/verify", json={"text": ""}).status_code == 400
    resp = client_module.post("/v1/watermark/verify", json={"txt": "hello"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "text"
    weird = verify(client_module, "\u202e\u200b\U0001f600 \x00 ﷽" * 20)
    assert np.isfinite(weird["z_score"])


def test_verifications_counted_by_verdict(client_module):
    def count(verdict: str) -> float:
        for line in client_module.get("/metrics").text.splitlines():
            if line.startswith(f'greenlist_watermark_verifications_total{{verdict="{verdict}"}}'):
                return float(line.split()[-1])
        return 0.0

    before = count("too_short")
    verify(client_module, "Too short.")
    assert count("too_short") == before + 1
