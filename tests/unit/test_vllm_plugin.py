"""The vLLM adapter (watermark/vllm_plugin.py) driven through add / remove / move batch updates, without a GPU.

Batch updates use vLLM's own ``BatchUpdate`` / ``MoveDirectionality`` / ``SamplingParams`` when vLLM 0.27-style
V1 classes import (``pip install vllm==0.27.1 --no-deps`` plus a few light dependencies), and always a test double
that mirrors their documented semantics (``docs/features/custom_logitsprocs.md``; removed, then added, then moved;
``output_tok_ids`` a live reference to the request's output list).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from watermark import vllm_plugin
from watermark.keys import WatermarkKey
from watermark.scheme import GreenListScheme
from watermark.vllm_plugin import XARG_KEY_ID, WatermarkAdapter, load_plugin_config

V = 49152
KEYS = {"wm-20261203-aaaaaa": "a" * 64, "wm-robust-20261203-bbbbbb": "b" * 64, "wm-lefthash-20261203-cccccc": "c" * 64}


class DoubleMove(enum.Enum):
    """Mirror of vLLM's ``MoveDirectionality``."""

    UNIDIRECTIONAL = enum.auto()
    SWAP = enum.auto()


@dataclass(frozen=True)
class DoubleBatchUpdate:
    """Mirror of vLLM's ``BatchUpdate``."""

    batch_size: int
    removed: Sequence[int]
    added: Sequence[tuple[int, Any, list[int] | None, list[int]]]
    moved: Sequence[tuple[int, int, Any]]


@dataclass
class DoubleParams:
    """Mirror of the one ``SamplingParams`` field the adapter reads."""

    extra_args: dict[str, Any] | None = None


def _vllm_classes():
    v1 = pytest.importorskip("vllm.v1.sample.logits_processor", reason="vLLM (0.27-style V1 interface) not installed")
    from vllm import SamplingParams

    return v1.BatchUpdate, v1.MoveDirectionality, lambda extra: SamplingParams(extra_args=extra)


@pytest.fixture(params=["double", "vllm"])
def api(request):
    """(BatchUpdate, MoveDirectionality, make_params) from the test double or from vLLM itself."""
    if request.param == "vllm":
        return _vllm_classes()
    return DoubleBatchUpdate, DoubleMove, lambda extra: DoubleParams(extra)


@pytest.fixture()
def key_file(tmp_path, monkeypatch):
    path = tmp_path / "watermark_keys.json"
    path.write_text(
        json.dumps(
            {
                "active": "wm-20261203-aaaaaa",
                "keys": {
                    **{k: {"kind": "keyed", "secret": v} for k, v in KEYS.items()},
                    "wm-20251101-retire": {"kind": "keyed", "secret": "d" * 64, "retired": True},
                },
            }
        )
    )
    for name in ("GREENLIST_WATERMARK_KEY", "GREENLIST_WATERMARK_SEEDING_SCHEME", "GREENLIST_WATERMARK_DELTA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GREENLIST_WATERMARK_KEY_FILE", str(path))
    return path


def green(key_id: str, context: list[int], scheme: str = "selfhash") -> torch.Tensor:
    """The local (NumPy) green list of ``key_id`` after ``context``: what the adapter must bias."""
    key = WatermarkKey(key_id, bytes.fromhex(KEYS[key_id]))
    return torch.from_numpy(key.scheme(0.25, scheme).green_mask(context, V).copy())


def check_rows(adapter: WatermarkAdapter, expected: dict[int, tuple[str, list[int]] | None], rows: int) -> None:
    """Apply to random logits; each row must be raised by exactly δ on its key's green list, or untouched."""
    logits = torch.randn(rows, V)
    out = adapter.apply(logits.clone())
    for row in range(rows):
        want = expected.get(row)
        if want is None:
            assert torch.equal(out[row], logits[row]), f"row {row} should not be watermarked"
        else:
            key_id, context = want
            mask = green(key_id, context)
            assert torch.equal(out[row], logits[row] + mask.float() * 2.0), f"row {row}: wrong green list"


def test_rows_follow_add_remove_move(api, key_file):
    BatchUpdate, Move, params = api
    cls = vllm_plugin.GreenlistWatermarkLogitsProcessor
    cls = cls if issubclass(cls, WatermarkAdapter) else WatermarkAdapter  # vLLM 0.34 installed: V2 class
    adapter = cls(object(), torch.device("cpu"), False)
    assert adapter.is_argmax_invariant() is False
    a, b, c = "wm-20261203-aaaaaa", "wm-robust-20261203-bbbbbb", "wm-lefthash-20261203-cccccc"
    out0, out1, out2 = [], [], []
    adapter.update_state(
        BatchUpdate(
            batch_size=3,
            removed=[],
            moved=[],
            added=[
                (0, params({XARG_KEY_ID: a}), [5, 6, 7, 8], out0),
                (1, params(None), [1, 2, 3], out1),  # asked for no watermark
                (2, params({XARG_KEY_ID: b}), [9, 10], out2),
            ],
        )
    )
    check_rows(adapter, {0: (a, [6, 7, 8]), 2: (b, [])}, 3)
    out0 += [100, 101]  # vLLM appends sampled tokens to the live lists; no batch update for that
    out2 += [7]
    adapter.update_state(None)
    check_rows(adapter, {0: (a, [8, 100, 101]), 2: (b, [])}, 3)
    assert adapter.applied(0) and adapter.applied(1) is None

    # request 0 finishes; request at 2 is condensed into slot 0 (one-way move)
    adapter.update_state(BatchUpdate(batch_size=2, removed=[0], added=[], moved=[(2, 0, Move.UNIDIRECTIONAL)]))
    assert set(adapter.rows) == {0} and adapter.rows[0].key_id == b
    check_rows(adapter, {0: (b, [])}, 2)

    # a new request replaces the unwatermarked row 1, then rows 0 and 1 swap
    out_new = [44]
    adapter.update_state(
        BatchUpdate(
            batch_size=2, removed=[], added=[(1, params({XARG_KEY_ID: c}), [3, 2], out_new)], moved=[(0, 1, Move.SWAP)]
        )
    )
    assert adapter.rows[0].key_id == c and adapter.rows[1].key_id == b
    assert adapter.rows[0].output_ids is out_new  # the live reference moved with the request
    lefthash = torch.from_numpy(GreenListScheme(bytes.fromhex(KEYS[c]), c, 0.25, "lefthash").green_mask([44], V))
    logits = torch.zeros(2, V)
    out = adapter.apply(logits)
    assert torch.equal(out[0], lefthash.float() * 2.0)
    assert torch.equal(out[1], green(b, [], "robust").float() * 2.0)

    # an added request may reuse an index without a prior remove: the old state must not leak
    adapter.update_state(BatchUpdate(batch_size=2, removed=[], added=[(0, params(None), [1], [])], moved=[]))
    assert set(adapter.rows) == {1}


def test_prompt_supplies_the_first_contexts(api, key_file):
    BatchUpdate, _, params = api
    adapter = WatermarkAdapter()
    a = "wm-20261203-aaaaaa"
    out: list[int] = []
    adapter.update_state(
        BatchUpdate(batch_size=1, removed=[], moved=[], added=[(0, params({XARG_KEY_ID: a}), [1, 2, 3, 4], out)])
    )
    check_rows(adapter, {0: (a, [2, 3, 4])}, 1)
    out.append(50)
    check_rows(adapter, {0: (a, [3, 4, 50])}, 1)
    # without prompt ids the first positions cannot be seeded: left alone, as the detector scores them not
    adapter.update_state(
        BatchUpdate(batch_size=1, removed=[0], moved=[], added=[(0, params({XARG_KEY_ID: a}), None, [7])])
    )
    check_rows(adapter, {}, 1)


def test_placeholders_stop_the_row_loudly(api, key_file, caplog):
    BatchUpdate, _, params = api
    adapter = WatermarkAdapter()
    a, b = "wm-20261203-aaaaaa", "wm-robust-20261203-bbbbbb"
    out0, out1, out2 = [11, 12, 13], [11, 12, 13], [21, 22, 23]
    adapter.update_state(
        BatchUpdate(
            batch_size=3,
            removed=[],
            moved=[],
            added=[
                (0, params({XARG_KEY_ID: a}), [1], out0),
                (1, params({XARG_KEY_ID: b}), [1], out1),
                (2, params({XARG_KEY_ID: a}), [1], out2),
            ],
        )
    )
    out0.append(-1)  # async scheduling placeholder (vLLM issue #52461)
    out1.append(-1)
    with caplog.at_level(logging.ERROR, logger="greenlist.vllm"):
        check_rows(adapter, {1: (b, []), 2: (a, [21, 22, 23])}, 3)
    assert "NOT APPLIED" in caplog.text and "--logits-processors" in caplog.text
    assert adapter.applied(0) is False and adapter.not_applied == [a]
    assert adapter.applied(1) is True  # robust reads no token values
    out0[-1] = 99  # even if real ids arrive later, the request stays unwatermarked (its earlier tokens were not)
    check_rows(adapter, {1: (b, []), 2: (a, [21, 22, 23])}, 3)


def test_validate_params(api, key_file):
    _, _, params = api
    validate = vllm_plugin.GreenlistWatermarkLogitsProcessor.validate_params
    validate(params(None))
    validate(params({"other_plugin_arg": 1}))
    validate(params({XARG_KEY_ID: "wm-robust-20261203-bbbbbb"}))
    for bad, message in (
        ({XARG_KEY_ID: "nope"}, "no active watermark key"),
        ({XARG_KEY_ID: "wm-20251101-retire"}, "no active watermark key"),
        ({XARG_KEY_ID: 3}, "non-empty string"),
        ({XARG_KEY_ID: "wm-20261203-aaaaaa", "greenlist_watermark_key": "a" * 64}, "server settings"),
        ({"greenlist_delta": 5.0}, "server settings"),
    ):
        with pytest.raises(ValueError, match=message):
            validate(params(bad))


def test_loaded_twice_in_one_engine_adds_delta_once(api, key_file):
    BatchUpdate, _, params = api
    engine = object()
    first, second = WatermarkAdapter(engine), WatermarkAdapter(engine)
    a = "wm-20261203-aaaaaa"
    update = BatchUpdate(batch_size=1, removed=[], moved=[], added=[(0, params({XARG_KEY_ID: a}), [1, 2, 3], [])])
    first.update_state(update)
    second.update_state(update)
    logits = torch.zeros(1, V)
    out = second.apply(first.apply(logits))
    assert torch.equal(out[0], green(a, [1, 2, 3]).float() * 2.0)


def test_configuration_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GREENLIST_WATERMARK_KEY_FILE", raising=False)
    monkeypatch.delenv("GREENLIST_WATERMARK_KEY", raising=False)
    with pytest.raises(ValueError, match="no watermark key"):
        load_plugin_config({})
    env = {
        "GREENLIST_WATERMARK_KEY": "x" * 32,
        "GREENLIST_WATERMARK_KEY_ID": "wm-robust-20261203-eeeeee",
        "GREENLIST_WATERMARK_DELTA": "3.0",
    }
    config = load_plugin_config(env)
    assert config.delta == 3.0 and config.scheme("wm-robust-20261203-eeeeee").seeding_scheme == "robust"
    config = load_plugin_config(
        {
            "GREENLIST_WATERMARK_KEY": "x" * 32,
            "GREENLIST_WATERMARK_KEY_ID": "prod",
            "GREENLIST_WATERMARK_SEEDING_SCHEME": "lefthash",
        }
    )
    assert config.scheme("prod").seeding_scheme == "lefthash"  # an id that records no scheme follows the setting
    with pytest.raises(ValueError, match="invalid watermark settings"):
        load_plugin_config({**env, "GREENLIST_WATERMARK_GAMMA": "1.5"})
    with pytest.raises(FileNotFoundError):
        load_plugin_config({"GREENLIST_WATERMARK_KEY_FILE": str(tmp_path / "missing.json")})
    # a server with the package installed but no key starts; requests asking for a watermark are rejected
    adapter = WatermarkAdapter()
    assert adapter.config is None
    with pytest.raises(ValueError, match="cannot watermark: no watermark key"):
        WatermarkAdapter.validate_params(DoubleParams({XARG_KEY_ID: "wm-20261203-aaaaaa"}))
    WatermarkAdapter.validate_params(DoubleParams(None))


def test_module_imports_without_vllm_and_builds_the_class_lazily():
    """The class vLLM loads subclasses the installed vLLM's ``LogitsProcessor`` (V1 or V2), or the adapter alone."""
    from watermark.vllm_plugin import WatermarkAdapterV2

    cls = vllm_plugin.GreenlistWatermarkLogitsProcessor
    assert cls.__module__ == "watermark.vllm_plugin"
    with pytest.raises(AttributeError):
        vllm_plugin.NoSuchThing  # noqa: B018
    try:
        from vllm.v1.sample.logits_processor import LogitsProcessor
    except ImportError:
        try:
            from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as V2
        except ImportError:
            assert issubclass(cls, WatermarkAdapter)
            return
        assert issubclass(cls, V2) and issubclass(cls, WatermarkAdapterV2)  # what vLLM 0.34's loader checks
        return
    assert issubclass(cls, LogitsProcessor) and issubclass(cls, WatermarkAdapter)


# --- vLLM 0.34 model-runner V2 interface -----------------------------------------------------------------------------


@dataclass
class Staged:
    """Stand-in for vLLM's ``StagedWriteTensor`` / ``UvaBackedTensor``: the device tensor is ``.gpu``."""

    gpu: torch.Tensor


@pytest.fixture(params=["double", "vllm"])
def v2(request):
    """(make_ctx, make_req_states) from plain objects or from vLLM 0.34's own dataclasses."""
    from types import SimpleNamespace

    if request.param == "vllm":
        mod = pytest.importorskip(
            "vllm.v1.worker.gpu.sample.logits_processor", reason="vLLM 0.34 (model runner V2 interface) not installed"
        )
        ctx_cls, state_cls = mod.LogitsContext, mod.LogitsProcRequestState
    else:
        ctx_cls = state_cls = SimpleNamespace

    def make_ctx(slots, pos, input_ids, local):
        return ctx_cls(
            expanded_idx_mapping=torch.tensor(slots),
            idx_mapping=torch.tensor(sorted(set(slots))),
            idx_mapping_np=np.array(sorted(set(slots))),
            expanded_local_pos=torch.tensor(local),
            input_ids=torch.tensor(input_ids),
            pos=torch.tensor(pos),
            seq_lens_upper_bound_np=np.array(pos) + 1,
        )

    def make_states(all_ids):
        n = all_ids.shape[0]
        return state_cls(
            device=torch.device("cpu"),
            max_num_reqs=n,
            vocab_size=V,
            all_token_ids=Staged(all_ids),
            prompt_len=Staged(torch.zeros(n)),
            prefill_len=Staged(torch.zeros(n)),
            total_len=Staged(torch.zeros(n)),
        )

    return make_ctx, make_states


def test_v2_rows_contexts_and_speculative_rows(v2, key_file):
    from watermark.vllm_plugin import WatermarkAdapterV2

    make_ctx, make_states = v2
    a, b = "wm-20261203-aaaaaa", "wm-robust-20261203-bbbbbb"
    all_ids = torch.arange(100, 164).reshape(4, 16)  # slot s holds tokens 100+16s, 101+16s, ...
    proc = WatermarkAdapterV2(None, make_states(all_ids))
    assert proc.add_request(2, DoubleParams({XARG_KEY_ID: a})) is True
    assert proc.add_request(1, DoubleParams(None)) is False
    assert proc.add_request(0, DoubleParams({XARG_KEY_ID: b})) is True
    # rows: slot 2 at position 5 (last committed token fed), slot 1, slot 0; then slot 2's draft row at position 6
    draft = 7
    ctx = make_ctx(
        slots=[2, 1, 0, 2],
        pos=[5, 3, 4, 6],
        local=[0, 0, 0, 1],
        input_ids=[int(all_ids[2, 5]), int(all_ids[1, 3]), int(all_ids[0, 4]), draft],
    )
    logits = torch.randn(4, V)
    out = proc.apply(logits.clone(), ctx)
    assert torch.equal(out[0], logits[0] + green(a, all_ids[2, 3:6].tolist()).float() * 2.0)
    assert torch.equal(out[1], logits[1])
    assert torch.equal(out[2], logits[2] + green(b, [], "robust").float() * 2.0)
    # the draft row's context: committed x[4], the previous row's input x[5], its own draft token
    assert torch.equal(out[3], logits[3] + green(a, [int(all_ids[2, 4]), int(all_ids[2, 5]), draft]).float() * 2.0)
    # a recycled slot forgets its previous request
    assert proc.add_request(2, DoubleParams(None)) is False
    out = proc.apply(logits.clone(), ctx)
    assert torch.equal(out[0], logits[0]) and torch.equal(out[3], logits[3])


def test_v2_refuses_negative_ids_and_early_positions(v2, key_file, caplog):
    from watermark.vllm_plugin import WatermarkAdapterV2

    make_ctx, make_states = v2
    a = "wm-20261203-aaaaaa"
    all_ids = torch.arange(100, 164).reshape(4, 16)
    all_ids[3, 4] = -1
    proc = WatermarkAdapterV2(None, make_states(all_ids))
    proc.add_request(3, DoubleParams({XARG_KEY_ID: a}))
    proc.add_request(0, DoubleParams({XARG_KEY_ID: a}))
    ctx = make_ctx(slots=[3, 0], pos=[5, 1], local=[0, 0], input_ids=[int(all_ids[3, 5]), int(all_ids[0, 1])])
    logits = torch.randn(2, V)
    with caplog.at_level(logging.ERROR, logger="greenlist.vllm"):
        out = proc.apply(logits.clone(), ctx)
    assert torch.equal(out, logits)  # slot 3 has a -1 in its context; slot 0 is at position 1 (< 3 tokens)
    assert "NOT APPLIED" in caplog.text and proc.not_applied == [a] and 3 not in proc.slots and 0 in proc.slots
