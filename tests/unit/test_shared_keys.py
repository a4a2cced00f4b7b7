"""Keys shared by configuration: `greenlist secrets init`, GREENLIST_SECRETS_DIR / *_FILE, refusal, export-public."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.security.shared_keys import SharedKeysError, load_certificate_signer, load_watermark_keys
from gateway.settings import Settings
from watermark.certificate import check_certificate, text_sha256
from watermark.keys import derived_suffix, read_key_file


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("GREENLIST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GREENLIST_HOME", str(tmp_path / "home"))


def test_secrets_init_makes_private_files_and_replicas_share_them(tmp_path):
    secrets = tmp_path / "secrets"
    res = CliRunner().invoke(cli, ["secrets", "init", str(secrets)])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for name in ("watermark_keys.json", "signing_key.pem"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600
    data = json.loads((secrets / "watermark_keys.json").read_text())
    key_id = data["active"]
    assert key_id.endswith("-" + derived_suffix(bytes.fromhex(data["keys"][key_id]["secret"])))
    # two "replicas" with different homes, same secrets dir: same keys, nothing generated in either home
    a = Settings(secrets_dir=secrets)
    b = Settings(secrets_dir=secrets)
    assert load_watermark_keys(a) == load_watermark_keys(b)
    assert load_certificate_signer(a).public() == load_certificate_signer(b).public()
    assert not (tmp_path / "home" / "watermark_keys.json").exists()
    # never overwritten
    again = CliRunner().invoke(cli, ["secrets", "init", str(secrets)])
    assert again.exit_code == 1 and "never overwritten" in again.output
    assert json.loads((secrets / "watermark_keys.json").read_text())["active"] == key_id


def test_multi_replica_without_keys_refuses_with_instructions(tmp_path):
    with pytest.raises(SharedKeysError, match="greenlist secrets init DIR"):
        load_watermark_keys(Settings(redis_url="redis://127.0.0.1:1"))
    with pytest.raises(SharedKeysError, match="signing key"):
        load_certificate_signer(Settings(require_shared_keys=True, watermark_key="k" * 32))
    with pytest.raises(SharedKeysError, match="does not exist"):
        load_watermark_keys(Settings(require_shared_keys=True, secrets_dir=tmp_path / "missing"))
    assert not (tmp_path / "home" / "watermark_keys.json").exists()  # nothing generated silently
    # a single replica still makes its own keys on first start
    assert load_watermark_keys(Settings()).active.key_id.startswith("wm-")


def test_single_values_from_env_and_files(tmp_path, monkeypatch):
    secrets = tmp_path / "s"
    assert CliRunner().invoke(cli, ["secrets", "init", str(secrets)]).exit_code == 0
    (tmp_path / "wm.txt").write_text("a-shared-watermark-secret-of-some-length\n")
    monkeypatch.setenv("GREENLIST_REQUIRE_SHARED_KEYS", "1")
    monkeypatch.setenv("GREENLIST_WATERMARK_KEY_FILE", str(tmp_path / "wm.txt"))
    monkeypatch.setenv("GREENLIST_SIGNING_KEY_FILE", str(secrets / "signing_key.pem"))
    ring = load_watermark_keys(Settings())
    assert ring.active.secret == b"a-shared-watermark-secret-of-some-length"
    assert ring.active.key_id.startswith("wm-env-")  # derived: same on every replica
    monkeypatch.delenv("GREENLIST_WATERMARK_KEY_FILE")
    monkeypatch.setenv("GREENLIST_WATERMARK_KEY", "a-shared-watermark-secret-of-some-length")
    assert load_watermark_keys(Settings()).active.key_id == ring.active.key_id
    # a key set file in GREENLIST_WATERMARK_KEY_FILE is the whole set
    monkeypatch.delenv("GREENLIST_WATERMARK_KEY")
    monkeypatch.setenv("GREENLIST_WATERMARK_KEY_FILE", str(secrets / "watermark_keys.json"))
    assert load_watermark_keys(Settings()) == read_key_file(secrets / "watermark_keys.json")
    # the generic *_FILE form for a field without its own *_file field
    (tmp_path / "redis.txt").write_text("redis://:pw@10.0.0.5:6379/0\n")
    monkeypatch.setenv("GREENLIST_REDIS_URL_FILE", str(tmp_path / "redis.txt"))
    assert Settings().redis_url == "redis://:pw@10.0.0.5:6379/0"


def test_rotation_on_a_shared_set_and_export_public(tmp_path, monkeypatch):
    secrets = tmp_path / "s"
    runner = CliRunner()
    assert runner.invoke(cli, ["secrets", "init", str(secrets)]).exit_code == 0
    monkeypatch.setenv("GREENLIST_SECRETS_DIR", str(secrets))
    first = read_key_file(secrets / "watermark_keys.json").active.key_id
    new = runner.invoke(cli, ["watermark-keys", "rotate", "--no-activate"]).output.strip()
    ring = read_key_file(secrets / "watermark_keys.json")
    assert ring.active.key_id == first and {k.key_id for k in ring.verifying} == {first, new}
    assert runner.invoke(cli, ["watermark-keys", "activate", new]).exit_code == 0
    assert runner.invoke(cli, ["watermark-keys", "retire", first]).exit_code == 0
    ring = read_key_file(secrets / "watermark_keys.json")
    assert ring.active.key_id == new and [k.key_id for k in ring.verifying] == [new]
    assert not (tmp_path / "home" / "watermark_keys.json").exists()
    assert runner.invoke(cli, ["watermark-keys", "activate", first]).exit_code == 1  # retired
    exported = json.loads(runner.invoke(cli, ["keys", "export-public"]).stdout)
    assert exported["active_watermark_key"] == new and "secret" not in json.dumps(exported)
    b64 = runner.invoke(cli, ["keys", "export-public", "--format", "b64"]).stdout.strip()
    assert exported["signing_keys"][0]["public_key"] == b64
    cert = load_certificate_signer(Settings()).sign({"verdict": "watermarked", "text_sha256": text_sha256("hi")})
    assert check_certificate(cert, "hi", [b64])[0]


def test_key_file_with_a_given_secret(tmp_path):
    """A fixed secret (what the test suite's home uses) gives the same key id and secret; a short one is refused."""
    from watermark.keys import create_key_file

    secret = bytes(range(32))
    ids = [create_key_file(tmp_path / f"{n}.json", secret=secret) for n in ("a", "b")]
    assert ids[0] == ids[1] and ids[0].endswith("-" + derived_suffix(secret))
    assert read_key_file(tmp_path / "a.json").active.secret == secret
    assert create_key_file(tmp_path / "c.json") != ids[0]  # no secret: a random one
    with pytest.raises(ValueError, match="16 bytes"):
        create_key_file(tmp_path / "d.json", secret=b"short")
