"""The ``robust`` (Unigram-Watermark) seeding scheme and key ids that record their scheme."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from watermark.detector import (
    ROBUST_REPEAT_CAP,
    WatermarkDetector,
    binomial_p_value,
    skipped_token_ids,
    weighted_p_value,
)
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


def test_each_distinct_token_counts_at_most_three_times():
    s = robust()
    det = WatermarkDetector(s, min_tokens=1)
    assert det.repeat_cap == ROBUST_REPEAT_CAP == 3
    greens = np.flatnonzero(s.green_mask([], V))[:20]
    once = det.detect(greens)
    assert once.num_tokens_scored == 20 and once.num_green_tokens == 20
    repeated = det.detect(np.tile(greens, 10))  # repeating every token alike adds no evidence
    assert repeated.num_tokens_scored == 60 and repeated.z_score == pytest.approx(once.z_score)
    assert repeated.p_value == pytest.approx(once.p_value)
    assert repeated.statuses.count("ignored") == 140 and "context" not in repeated.statuses
    assert repeated.statuses[:60].count("ignored") == 0  # the first three occurrences are the scored ones
    # one green token repeated 100 times among red ones: its weight is capped and the variance counts w^2
    reds = np.flatnonzero(~s.green_mask([], V))[:40]
    spam = det.detect(np.concatenate([reds, np.repeat(greens[:1], 100)]))
    assert spam.num_tokens_scored == 43 and spam.num_green_tokens == 3 and spam.z_score < 0
    assert WatermarkDetector(s, repeat_cap=1).detect(np.tile(greens, 10)).num_tokens_scored == 20


def test_weighted_p_value_is_exact():
    rng = np.random.default_rng(5)
    for _ in range(20):
        w = rng.integers(1, 4, 8)
        g = rng.random(8) < 0.4
        brute = sum(
            np.prod(np.where(bits, 0.25, 0.75))
            for bits in itertools.product([False, True], repeat=8)
            if (w * np.array(bits)).sum() >= (w * g).sum()
        )
        assert weighted_p_value(w, g, 0.25) == pytest.approx(brute, rel=1e-9)
    ones = np.ones(50, dtype=int)
    g = np.arange(50) < 30
    assert weighted_p_value(ones, g, 0.25) == binomial_p_value(30, 50, 0.25)


def test_skipped_tokens_are_ignored_and_resolved_by_the_tokenizer():
    s = robust()
    greens = np.flatnonzero(s.green_mask([], V))[:20]
    det = WatermarkDetector(s, min_tokens=1, skip_ids=[int(greens[0])])
    r = det.detect(greens)
    assert r.num_tokens_scored == 19 and r.statuses[0] == "ignored"

    def tok(text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}  # one id per character

    assert skipped_token_ids(tok) == frozenset({ord(","), ord(".")})  # only the one-token strings


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


def test_verifier_skips_common_tokens_and_windows_first_occurrences():
    from watermark.keys import KeyRing
    from watermark.verifier import Verifier

    def tok(text, add_special_tokens=True, return_offsets_mapping=False):
        out = {"input_ids": [ord(c) for c in text]}  # one token per character
        if return_offsets_mapping:
            out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
        return out

    key = WatermarkKey("wm-robust-20261206-abcdef", b"r" * 32)
    verifier = Verifier(KeyRing(key, (key,)), tok, "chars", 0.25, "selfhash", min_tokens=1)
    green = np.flatnonzero(key.scheme(0.25, "selfhash").green_mask([], 0x250))
    text = "".join(chr(c) for c in green if chr(c).isprintable() and c not in (ord(","), ord(".")))[:40] * 5 + ",.,."
    result = verifier.verify(text, windowed=True, detail=True)
    statuses = [t["status"] for t in result["tokens"]]
    assert result["scheme"]["seeding_scheme"] == "robust" and statuses[-4:] == ["ignored"] * 4
    assert result["num_tokens_scored"] == 120 and result["watermarked"]  # 40 distinct tokens x 3
    assert result["windowed"]["winmax_z"] is not None
