"""Unit tests of the green-list scheme, the logits processor, the detector and the key store."""

from __future__ import annotations

import math
import os
import stat

import numpy as np
import pytest
import torch

from watermark.detector import WatermarkDetector, binomial_p_value, normal_sf
from watermark.keys import load_keyring
from watermark.processor import WatermarkLogitsProcessor
from watermark.scheme import GreenListScheme

V = 49152
SCHEMES = ["lefthash", "selfhash"]


def scheme(kind, key=b"k" * 32, gamma=0.25):
    return GreenListScheme(key=key, key_id="t", gamma=gamma, seeding_scheme=kind)


def green_walk(s: GreenListScheme, n: int, rng) -> list[int]:
    """A sequence that always picks a green token: what δ → ∞ would generate."""
    ids = [11, 12, 13]
    for _ in range(n):
        ids.append(int(rng.choice(np.flatnonzero(s.green_mask(ids, V)))))
    return ids


@pytest.mark.parametrize("kind", SCHEMES)
@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.5])
def test_green_fraction_is_gamma(kind, gamma):
    s = scheme(kind, gamma=gamma)
    fractions = [s.green_mask([i, i + 1, i + 2], V).mean() for i in range(0, 3000, 300)]
    assert abs(np.mean(fractions) - gamma) < 0.01


@pytest.mark.parametrize("kind", SCHEMES)
def test_generation_and_detection_agree(kind):
    s = scheme(kind)
    ids = green_walk(s, 60, np.random.default_rng(0))
    det = WatermarkDetector(s).detect(ids)
    assert det.green_fraction > 0.95 and det.z_score > 10 and det.watermarked
    other = WatermarkDetector(scheme(kind, key=b"q" * 32)).detect(ids)
    assert other.z_score < 4 and not other.watermarked


@pytest.mark.parametrize("kind", SCHEMES)
def test_null_distribution_is_standard_normal(kind):
    det = WatermarkDetector(scheme(kind))
    rng = np.random.default_rng(1)
    zs = np.array([det.detect(rng.integers(0, V, 200)).z_score for _ in range(3000)])
    assert abs(zs.mean()) < 0.08 and abs(zs.std() - 1) < 0.08
    assert (zs >= 4).sum() == 0


def test_repeated_ngrams_are_scored_once():
    s = scheme("selfhash")
    det = WatermarkDetector(s, min_tokens=1)
    ids = green_walk(s, 10, np.random.default_rng(2))
    once = det.detect(ids)
    thrice = det.detect(ids * 3)
    assert thrice.num_tokens_scored <= once.num_tokens_scored + 6  # only the seams add new n-grams
    assert thrice.statuses.count("ignored") >= 2 * len(ids) - 12


def test_too_short_and_empty():
    det = WatermarkDetector(scheme("selfhash"), min_tokens=16)
    assert det.detect([1, 2, 3]).verdict == "too_short"
    empty = det.detect([])
    assert empty.num_tokens_scored == 0 and empty.p_value == 1.0 and empty.watermarked is None


def test_p_values():
    assert normal_sf(0.0) == pytest.approx(0.5)
    assert normal_sf(4.0) == pytest.approx(3.167e-5, rel=1e-3)
    # exact tail by direct summation: P(X >= 13), X ~ Binomial(20, 0.25)
    tail = sum(math.comb(20, k) * 0.25**k * 0.75 ** (20 - k) for k in range(13, 21))
    assert binomial_p_value(13, 20, 0.25) == pytest.approx(tail, rel=1e-9)
    assert binomial_p_value(0, 20, 0.25) == pytest.approx(1.0) and binomial_p_value(0, 0, 0.25) == 1.0
    # at T = 20 the normal approximation understates the tail roughly tenfold
    z = (13 - 5) / math.sqrt(20 * 0.25 * 0.75)
    assert tail > 5 * normal_sf(z)


@pytest.mark.parametrize("kind", SCHEMES)
def test_processor_adds_delta_to_green_logits(kind):
    s = scheme(kind)
    proc = WatermarkLogitsProcessor(s, delta=2.5)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    scores = torch.zeros(2, V)
    out = proc(ids, scores.clone())
    for row in range(2):
        mask = torch.from_numpy(s.green_mask(ids[row].tolist(), V))
        assert torch.all(out[row][mask] == 2.5) and torch.all(out[row][~mask] == 0)


def test_invalid_parameters():
    with pytest.raises(ValueError, match="16 bytes"):
        GreenListScheme(key=b"short", key_id="x")
    with pytest.raises(ValueError, match="gamma"):
        scheme("selfhash", gamma=1.5)
    with pytest.raises(ValueError, match="seeding scheme"):
        GreenListScheme(key=b"k" * 32, key_id="x", seeding_scheme="minhash")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta"):
        WatermarkLogitsProcessor(scheme("selfhash"), delta=0)


def test_keyring_created_private_and_stable(tmp_path, monkeypatch):
    monkeypatch.delenv("GREENLIST_WATERMARK_KEY", raising=False)
    first = load_keyring(tmp_path)
    path = tmp_path / "watermark_keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_keyring(tmp_path)
    assert again.active.key_id == first.active.key_id and again.active.secret == first.active.secret
    assert len(first.active.secret) == 32


def test_keyring_from_a_single_secret(tmp_path):
    ring = load_keyring(tmp_path, secret="a-long-enough-secret-value", key_id="prod-1")
    assert ring.active.key_id == "prod-1" and not (tmp_path / "watermark_keys.json").exists()
    derived = load_keyring(tmp_path, secret="a-long-enough-secret-value").active.key_id
    assert (
        derived.startswith("wm-env-")
        and derived == load_keyring(tmp_path / "x", secret="a-long-enough-secret-value").active.key_id
    )
    assert derived != load_keyring(tmp_path, secret="another-long-secret-value").active.key_id
    with pytest.raises(ValueError, match="16 characters"):
        load_keyring(tmp_path, secret="short")


def test_processor_with_prompt_shorter_than_context_leaves_scores_alone():
    """A one-token prompt ("Hi" as a text completion) used to raise inside generate (HTTP 500)."""
    import torch

    from watermark.processor import WatermarkLogitsProcessor
    from watermark.scheme import GreenListScheme

    scheme = GreenListScheme(b"k" * 32, "k1", 0.25, "selfhash")
    processor = WatermarkLogitsProcessor(scheme, 2.0)
    scores = torch.zeros(1, 50)
    assert torch.equal(processor(torch.tensor([[7]]), scores.clone()), scores)  # too short: unbiased
    biased = processor(torch.tensor([[7, 8, 9]]), scores.clone())  # enough context: green tokens get +delta
    assert set(biased.unique().tolist()) == {0.0, 2.0}
