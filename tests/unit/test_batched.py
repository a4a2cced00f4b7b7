"""The batched torch green lists (watermark/batched.py) against the local logits processor, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from watermark.batched import BatchedGreenList, green_mask_batched, mix64_torch, watermark_logits
from watermark.compat import TransformersLefthashScheme
from watermark.processor import WatermarkLogitsProcessor
from watermark.scheme import SEEDING_SCHEMES, GreenListScheme, mix64

V = 49152  # SmolLM2's vocabulary
CONTEXTS = 1000


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def scheme(kind: str, key: bytes = b"k" * 32, gamma: float = 0.25) -> GreenListScheme:
    return GreenListScheme(key=key, key_id="t", gamma=gamma, seeding_scheme=kind)  # type: ignore[arg-type]


def test_mix64_matches_numpy_on_all_bit_patterns():
    rng = np.random.default_rng(0)
    words = np.r_[
        rng.integers(0, 2**64 - 1, 10_000, dtype=np.uint64, endpoint=True),
        np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64),
    ]
    ours = mix64_torch(torch.from_numpy(words.view(np.int64))).numpy().view(np.uint64)
    assert np.array_equal(ours, mix64(words))


@pytest.mark.parametrize("kind", SEEDING_SCHEMES)
def test_green_lists_equal_local_processor_on_1000_random_contexts(kind):
    """Bit-exact: the biased logits of the batched function equal the local processor's, row for row."""
    s = scheme(kind)
    rng = np.random.default_rng(sum(map(ord, kind)))
    delta = 2.0
    local = WatermarkLogitsProcessor(s, delta)
    for start in range(0, CONTEXTS, 250):  # 250 rows at a time keeps memory small
        rows = 250
        ids = torch.from_numpy(rng.integers(0, V, (rows, 6)))  # recent tokens, oldest first (any width >= need)
        ids[:20] = torch.from_numpy(rng.integers(0, 40, (20, 6)))  # small ids and repeats: min-hash ties
        logits = torch.from_numpy(rng.normal(size=(rows, V)).astype(np.float32))
        expected = local(ids, logits.clone())
        got = watermark_logits(logits, ids, s, delta)
        assert torch.equal(got, expected), f"rows {start}..{start + rows} differ"
        green = green_mask_batched(s, ids, V)
        reference = np.stack([s.green_mask(row, V) for row in ids.tolist()])
        assert np.array_equal(green.numpy(), reference)
        assert abs(green.float().mean().item() - 0.25) < 0.01  # γ of the vocabulary is green


@pytest.mark.parametrize("kind", SEEDING_SCHEMES)
def test_other_gammas_keys_and_vocabulary_sizes(kind):
    rng = np.random.default_rng(7)
    for gamma, key, vocab in ((0.1, b"a" * 16, 151_936), (0.5, b"z" * 40, 32_000)):
        s = scheme(kind, key, gamma)
        ids = torch.from_numpy(rng.integers(0, vocab, (16, 4)))
        reference = np.stack([s.green_mask(row, vocab) for row in ids.tolist()])
        assert np.array_equal(green_mask_batched(s, ids, vocab).numpy(), reference)


def test_robust_list_is_fixed_and_selfhash_depends_on_context():
    robust = BatchedGreenList(scheme("robust"), V)
    a, b = robust.mask(torch.tensor([[1, 2, 3]])), robust.mask(torch.tensor([[9, 8, 7]]))
    assert torch.equal(a, b)
    assert torch.equal(robust.mask(torch.zeros(2, 0, dtype=torch.int64))[0], a[0])  # needs no context
    self_ = BatchedGreenList(scheme("selfhash"), V)
    x, y = self_.mask(torch.tensor([[1, 2, 3]])), self_.mask(torch.tensor([[9, 8, 7]]))
    assert (x != y).float().mean() > 0.2


def test_transformers_keys_fall_back_to_their_own_green_lists():
    s = TransformersLefthashScheme("hf", hash_key=15485863, vocab_size=1000, gamma=0.25)
    ids = torch.tensor([[3], [500], [999]])
    got = green_mask_batched(s, ids, 1000)
    assert np.array_equal(got.numpy(), np.stack([s.green_mask(r, 1000) for r in ids.tolist()]))


def test_errors():
    s = scheme("selfhash")
    with pytest.raises(ValueError, match="needs 3 context tokens"):
        green_mask_batched(s, torch.tensor([[1, 2]]), V)
    with pytest.raises(ValueError, match="delta"):
        watermark_logits(torch.zeros(1, V), torch.tensor([[1, 2, 3]]), s, 0.0)
    with pytest.raises(ValueError, match="rows"):
        watermark_logits(torch.zeros(2, V), torch.tensor([[1, 2, 3]]), s, 2.0)
    with pytest.raises(ValueError, match="vocab_size"):
        BatchedGreenList(s, 0)
