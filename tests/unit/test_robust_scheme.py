"""The ``robust`` (Unigram-Watermark) seeding scheme and key ids that record their scheme."""

from __future__ import annotations

import json

import numpy as np
import pytest

from watermark.detector import WatermarkDetector
from watermark.keys import WatermarkKey, load_keyring, read_key_file, rotate, scheme_of_key_id
from watermark.scheme import GreenListScheme

V = 49152


def robust(key: bytes = b"k" * 32) -> GreenListScheme:
    return GreenListScheme(key=key, key_id="t", gamma=0.25, seeding_scheme="robust")


def test_one_fixed_list_per_key_distinct_from_lefthash():
    s = robust()
    fixed = s.green_mask([], V)
    assert all(np.array_equal(s.green_mask(ctx, V), fixed) for ctx in ([1], [5, 6, 7], list(range(50))))
    assert abs(fixed.mean() - 0.25) < 0.01
    assert not np.array_equal(robust(b"q" * 32).green_mask([], V), fixed)
    lefthash = GreenListScheme(key=b"k" * 32, key_id="t", gamma=0.25, seeding_scheme="lefthash")
    overlap = max((lefthash.green_mask([t], V) & fixed).mean() for t in range(0, V, 997))
    assert overlap < 0.08  # ~γ² = 0.0625: not lefthash's list after any token
    assert s.context_needed == 0 and s.ngram_len == 1


def test_each_distinct_token_is_scored_once():
    s = robust()
    det = WatermarkDetector(s, min_tokens=1)
    greens = np.flatnonzero(s.green_mask([], V))[:20]
    once = det.detect(greens)
    assert once.num_tokens_scored == 20 and once.num_green_tokens == 20
    repeated = det.detect(np.tile(greens, 10))  # repetition adds no evidence
    assert repeated.num_tokens_scored == 20 and repeated.z_score == once.z_score
    assert repeated.statuses.count("ignored") == 180 and "context" not in repeated.statuses


def test_null_distribution_with_repeated_tokens_stays_valid():
    """Texts with heavy repetition under a random key: without dedup a single green token repeated would blow up z."""
    rng = np.random.default_rng(3)
    zs = []
    for _ in range(2000):
        det = WatermarkDetector(robust(rng.bytes(32)))
        base = rng.integers(0, V, 60)
        zs.append(det.detect(np.concatenate([base, np.repeat(base[:5], 30)])).z_score)
    zs_a = np.array(zs)
    assert abs(zs_a.mean()) < 0.1 and abs(zs_a.std() - 1) < 0.1 and (zs_a >= 4).sum() == 0


def test_edits_change_only_edited_tokens():
    s = robust()
    rng = np.random.default_rng(4)
    ids = [int(rng.choice(np.flatnonzero(s.green_mask([], V)))) for _ in range(200)]
    edited = list(ids)
    for pos in rng.choice(200, 60, replace=False):  # 30% substituted by random tokens
        edited[pos] = int(rng.integers(0, V))
    det = WatermarkDetector(s).detect(edited)
    assert det.green_fraction > 0.7 and det.watermarked


def test_key_ids_record_the_scheme(tmp_path, monkeypatch):
    monkeypatch.delenv("GREENLIST_WATERMARK_KEY", raising=False)
    assert scheme_of_key_id("wm-robust-20261203-a1b2c3") == "robust"
    assert scheme_of_key_id("wm-20261203-a1b2c3") is None and scheme_of_key_id("prod-robust") is None
    old = load_keyring(tmp_path).active  # an id made before: records no scheme, follows the setting
    assert old.seeding_scheme is None and old.scheme(0.25, "selfhash").seeding_scheme == "selfhash"
    new_id = rotate(tmp_path, seeding_scheme="robust")
    assert new_id.startswith("wm-robust-")
    ring = read_key_file(tmp_path / "watermark_keys.json")
    assert ring.active.key_id == new_id
    assert json.loads((tmp_path / "watermark_keys.json").read_text())["keys"][new_id]["seeding_scheme"] == "robust"
    # the server still says selfhash: the robust key is scored as robust, the old key as before
    schemes = {k.key_id: k.scheme(0.25, "selfhash").seeding_scheme for k in ring.verifying}
    assert schemes == {old.key_id: "selfhash", new_id: "robust"}
    single = load_keyring(tmp_path, secret="x" * 32, key_id="wm-lefthash-ops-1")
    assert single.active.scheme(0.25, "selfhash").seeding_scheme == "lefthash"
    with pytest.raises(ValueError, match="seeding scheme"):
        rotate(tmp_path, seeding_scheme="minhash")
    with pytest.raises(ValueError, match="seeding scheme"):
        WatermarkKey("k", b"x" * 32, seeding_scheme="minhash")
