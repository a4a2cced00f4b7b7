"""Fine-tune MiniLM's layers end to end through the default heads' features (recipes v9 and v12).

Recipes v5-v8 read frozen embeddings: mean-pooled, unit-norm layers 3 and 2 of
all-MiniLM-L6-v2 plus negation / reporting cues (:mod:`guardrails.toxicity.features`). Here the same feature
map is built in torch and layers 2 and 3 (0-based 1 and 2) are trained with it, so the encoder itself learns
what the heads need (who is attacked, negation, quotation) instead of a linear read-out of a general-purpose
sentence embedding. Layer 1 and the embeddings stay as packaged: their output for every training text is
computed once (:func:`guardrails.toxicity.training.finetune.encode_bottom`). The head starts from the logistic
heads fit on the frozen features and is trained together with the layers (AdamW, linear warm-up and decay,
class-balanced binary cross-entropy masked to each row's labelled categories).

v9 was the shipped default from 2026-12-06, v12 (all three layers the heads read, 1-3, three passes) is since
2026-12-07. What ships is the tuned layers only (float16: 6.6 MB for two layers, 9.9 MB for three)
in ``weights/minilm_layers.npz``;
:func:`guardrails.toxicity.onnx_encoder.load_tuned` puts them into the packaged model before the ONNX export,
and the logistic heads are then refit on the int8 embeddings of the tuned encoder (``train.train_default``), so
inference runs exactly as for v8.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from guardrails.toxicity.features import cue_features

SEED = 0
BATCH = 32
LR_LAYERS = 3e-5
LR_HEAD = 1e-3


class TunedLayers:
    """Copies of some layers of a ``transformers`` BERT model and a linear head, trained together (torch inside).

    Subclasses give ``forward``; :attr:`lr_layers` and :attr:`lr_head` are their AdamW learning rates.

    Args:
        base: The ``BertModel`` whose layers are copied (not changed).
        tuned: 0-based indices of the layers to train; contiguous, ending at the model's last layer.
        W: (K, D) initial head weights, ``b`` (K,) initial bias (the logistic heads on frozen features).
    """

    lr_layers = LR_LAYERS
    lr_head = LR_HEAD

    def __init__(self, base: Any, tuned: tuple[int, ...], W: np.ndarray, b: np.ndarray) -> None:
        import copy

        import torch

        self.tuned = tuned
        self.blocks = torch.nn.ModuleList(copy.deepcopy(base.encoder.layer[i]) for i in tuned)
        self.head = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(W.astype(np.float32)))
            self.head.bias.copy_(torch.from_numpy(b.astype(np.float32)))

    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: the layers at :attr:`lr_layers`, the head at :attr:`lr_head`."""
        return [
            {"params": list(self.blocks.parameters()), "lr": self.lr_layers},
            {"params": list(self.head.parameters()), "lr": self.lr_head},
        ]

    def train(self, mode: bool = True) -> None:
        """Train / eval mode (dropout) of the tuned layers and the head."""
        self.blocks.train(mode)
        self.head.train(mode)

    def layer_arrays(self) -> dict[str, np.ndarray]:
        """The tuned layers as ``layer.<i>.<parameter>`` float16 arrays (``i`` 0-based, as in the base model),
        the format :func:`guardrails.toxicity.onnx_encoder.load_tuned` reads."""
        return {
            f"layer.{i}.{name}": p.detach().numpy().astype(np.float16)
            for i, block in zip(self.tuned, self.blocks, strict=True)
            for name, p in block.named_parameters()
        }


class FeatureModel(TunedLayers):
    """Tuned MiniLM layers and a linear head over the v5-v8 feature map.

    Args:
        base: The packaged ``BertModel`` cut to ``depth`` layers (its layers are copied, not changed).
        tuned: 0-based indices of the layers to train; contiguous, ending at the model's last layer.
        layers: Hidden states the head reads, 1-based as in :mod:`guardrails.toxicity.features` (top first).
        W: (K, D) initial head weights, ``b`` (K,) initial bias (the logistic heads on frozen features).

    Raises:
        ValueError: when a layer the head reads is below the tuned ones (it would not be computed here).
    """

    def __init__(self, base: Any, tuned: tuple[int, ...], layers: tuple[int, ...], W: np.ndarray, b: np.ndarray):
        if min(layers) < min(tuned) + 1:
            raise ValueError(f"head layers {layers} must be outputs of the tuned layers {tuned} (1-based)")
        super().__init__(base, tuned, W, b)
        self.layers = layers

    def forward(self, h: Any, mask: Any, cues: Any) -> Any:
        """Logits (B, K) from the frozen layers' output ``h`` (B, L, 384), 0/1 ``mask`` (B, L), ``cues`` (B, 2)."""
        import torch

        from guardrails.toxicity.model import additive_mask, mean_pool

        am = additive_mask(mask, h.dtype)
        states = {min(self.tuned): h}
        for i, block in zip(self.tuned, self.blocks, strict=True):
            h = block(h, am)
            h = h[0] if isinstance(h, tuple) else h
            states[i + 1] = h
        pooled = [torch.nn.functional.normalize(mean_pool(states[k], mask), dim=-1) for k in self.layers]
        top = pooled[0]
        x = torch.cat([*pooled, cues[:, :1] * top, cues[:, 1:] * top, cues], dim=1)
        return self.head(x)

    def save(self, path: Path) -> Path:
        """Write the tuned layers as ``layer.<i>.<parameter>`` float16 arrays (``i`` 0-based) to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self.layer_arrays())
        return path


def pos_weights(Y: np.ndarray, row_w: np.ndarray) -> np.ndarray:
    """Per category: weighted negatives / weighted positives among the rows that label it (clipped to 0.2-20), the
    ``pos_weight`` that gives both classes equal weighted mass in the binary cross-entropy."""
    lab = ~np.isnan(Y)
    pw = np.ones(Y.shape[1], dtype=np.float32)
    for k in range(Y.shape[1]):
        w, y = row_w[lab[:, k]], Y[lab[:, k], k]
        pw[k] = float(w[y == 0].sum() / max(w[y == 1].sum(), 1e-6))
    return np.clip(pw, 0.2, 20.0)


def fit(
    model: TunedLayers,
    lengths: list[int],
    batch_inputs: Callable[[list[int]], tuple[Any, ...]],
    Y: np.ndarray,
    row_w: np.ndarray,
    rng: random.Random,
    epochs: int = 1,
    batch: int = 32,
    label: str = "fit",
    teacher: np.ndarray | None = None,
    distill: float = 0.0,
) -> None:
    """Train ``model`` in place (then eval mode): AdamW, linear warm-up over 6 % of the steps and linear decay,
    bfloat16 autocast, gradient norm clipped at 1, class-balanced binary cross-entropy (:func:`pos_weights`)
    masked to each row's labelled categories and weighted by ``row_w``.

    Args:
        model: The layers and head to train.
        lengths: N sequence lengths; batches are drawn from length buckets of ``20 * batch`` rows (shuffled inside
            and between, with ``rng``), so a batch pads little.
        batch_inputs: Row indices -> the arguments of ``model.forward`` for that batch.
        Y: (N, K) labels, nan where a row's source does not label a category.
        row_w: (N,) row weights.
        rng: Source of the batch order (seeded by the caller, with torch's seed for dropout).
        epochs: Passes over the data.
        batch: Rows per step.
        label: Prefix of the progress lines (every 100 steps).
        teacher: Optional (N, K) probabilities of a teacher model for the same rows: with ``distill`` > 0 the loss
            adds ``distill`` times the row-weighted binary cross-entropy against them on every
            category (knowledge distillation with soft targets, Hinton et al. 2015, as DistilBERT and TinyBERT
            recover a smaller BERT's quality).
        distill: Weight of the distillation term.
    """
    import torch

    PW = torch.from_numpy(pos_weights(Y, row_w))
    Yt, Mt = torch.from_numpy(np.nan_to_num(Y, nan=0.0)), torch.from_numpy((~np.isnan(Y)).astype(np.float32))
    Wt = torch.from_numpy(row_w.astype(np.float32))
    Tt = torch.from_numpy(teacher.astype(np.float32)) if teacher is not None and distill > 0 else None
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    opt = torch.optim.AdamW(model.parameter_groups(), weight_decay=0.01)
    steps = epochs * math.ceil(len(order) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps)
    )
    params = [p for g in model.parameter_groups() for p in g["params"]]
    model.train(True)
    step, total, t0 = 0, 0.0, time.time()
    for _ in range(epochs):
        batches = []
        for i in range(0, len(order), batch * 20):
            chunk = order[i : i + batch * 20]
            rng.shuffle(chunk)
            batches += [chunk[j : j + batch] for j in range(0, len(chunk), batch)]
        rng.shuffle(batches)
        for bi in batches:
            args = batch_inputs(bi)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model.forward(*args).float()
            el = torch.nn.functional.binary_cross_entropy_with_logits(logits, Yt[bi], pos_weight=PW, reduction="none")
            w = Mt[bi] * Wt[bi, None]
            loss = (el * w).sum() / w.sum().clamp(min=1e-6)
            if Tt is not None:
                soft = torch.nn.functional.binary_cross_entropy_with_logits(logits, Tt[bi], reduction="none")
                loss = loss + distill * (soft.mean(1) * Wt[bi]).sum() / Wt[bi].sum().clamp(min=1e-6)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step, total = step + 1, total + float(loss.detach())
            if step % 100 == 0:
                print(f"{label}: step {step}/{steps} loss {total / step:.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.train(False)


def prune_ffn(model: FeatureModel, batches: list[tuple[Any, ...]], width: int) -> None:
    """Keep the ``width`` most important feed-forward units of every tuned layer (structured pruning, in place).

    A unit's importance is its mean absolute activation (after GELU) over the tokens of ``batches`` times the L2
    norm of its output weights: the size of its contribution to the layer's output (Michel et al., "Are Sixteen
    Heads Really Better than One?", NeurIPS 2019, and Hou et al., "DynaBERT", NeurIPS 2020, rank heads and
    feed-forward units this way). The encoder's cost per token is about linear in the units kept (2/3 of a
    layer's multiply-adds are in its feed-forward block at 1,536 units); fine-tuning afterwards recovers part of
    the loss (for the default's layers not enough to ship: docs/toxicity.md, "Latency").

    Args:
        model: The tuned layers and head; their ``intermediate.dense`` / ``output.dense`` are replaced.
        batches: Arguments of ``model.forward`` to measure the activations on.
        width: Units kept per layer (at most the layers' intermediate size).

    Raises:
        ValueError: a width above the layers' intermediate size, or below 1.
    """
    import torch

    blocks: list[Any] = list(model.blocks)  # transformers BertLayers
    size = blocks[0].intermediate.dense.out_features
    if not 1 <= width <= size:
        raise ValueError(f"ffn width must be 1-{size}, got {width}")
    sums = [torch.zeros(size) for _ in blocks]

    def measure(k: int) -> Callable[..., None]:
        def hook(_module: Any, _inputs: Any, out: Any) -> None:  # returns None: the output stays as it is
            sums[k].add_(out.detach().abs().sum((0, 1)))

        return hook

    hooks = [block.intermediate.register_forward_hook(measure(k)) for k, block in enumerate(blocks)]
    with torch.no_grad():
        for args in batches:
            model.forward(*args)
    for h in hooks:
        h.remove()
    for block, act in zip(blocks, sums, strict=True):
        up, down = block.intermediate.dense, block.output.dense
        keep = torch.sort(torch.topk(act * down.weight.norm(dim=0), width).indices).values
        new_up, new_down = torch.nn.Linear(up.in_features, width), torch.nn.Linear(width, down.out_features)
        with torch.no_grad():
            new_up.weight.copy_(up.weight[keep])
            new_up.bias.copy_(up.bias[keep])
            new_down.weight.copy_(down.weight[:, keep])
            new_down.bias.copy_(down.bias)
        block.intermediate.dense, block.output.dense = new_up, new_down


def tune(
    texts: list[str],
    Y: np.ndarray,
    row_w: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    out: Path,
    layers: tuple[int, ...] = (3, 2),
    tuned: tuple[int, ...] = (1, 2),
    epochs: int = 1,
    seed: int = SEED,
    ffn: int | None = None,
    teacher: np.ndarray | None = None,
    distill: float = 0.0,
) -> Path:
    """Fine-tune layers ``tuned`` of MiniLM through the feature map and write them to ``out``.

    Args:
        texts: N prepared texts (:func:`guardrails.toxicity.text.prepare`).
        Y: (N, K) labels, nan where a row's source does not label a category.
        row_w: (N,) row weights.
        W: (K, D) and ``b`` (K,): the logistic heads fit on the frozen features (the starting head).
        out: The ``.npz`` to write.
        layers: Hidden states the head reads (1-based, top first).
        tuned: 0-based layers to train; the model is cut to ``max(tuned) + 1`` layers.
        epochs: Passes over the data.
        seed: Seed of torch, the batch order and dropout.
        ffn: Feed-forward units kept per tuned layer (:func:`prune_ffn`, measured on up to 2,000 of ``texts``
            before training); None keeps all.
        teacher: Optional (N, K) teacher probabilities for ``texts`` and ``distill`` their weight (:func:`fit`).

    Returns:
        ``out``.
    """
    import torch

    from guardrails.toxicity.model import load_base
    from guardrails.toxicity.training.finetune import _pad, encode_bottom

    torch.manual_seed(seed)
    rng = random.Random(seed)
    base, tokenizer = load_base()
    base.encoder.layer = base.encoder.layer[: max(tuned) + 1]
    t0 = time.time()
    hidden = encode_bottom(base, tokenizer, texts, n_frozen=min(tuned))
    print(f"tune_layers: bottom {min(tuned)} layer(s) of {len(texts)} texts in {time.time() - t0:.0f} s", flush=True)
    model = FeatureModel(base, tuned, layers, W, b)
    cues = torch.from_numpy(cue_features(texts, 2))
    if ffn:
        sample = sorted(rng.sample(range(len(texts)), min(2000, len(texts))), key=lambda i: hidden[i].shape[0])
        chunks = [sample[i : i + BATCH] for i in range(0, len(sample), BATCH)]
        prune_ffn(model, [(*_pad([hidden[i] for i in bi]), cues[bi]) for bi in chunks], ffn)
    fit(
        model,
        [h.shape[0] for h in hidden],
        lambda bi: (*_pad([hidden[i] for i in bi]), cues[bi]),
        Y,
        row_w,
        rng,
        epochs=epochs,
        batch=BATCH,
        label="tune_layers",
        teacher=teacher,
        distill=distill,
    )
    return model.save(out)


__all__ = ["TunedLayers", "FeatureModel", "pos_weights", "fit", "prune_ffn", "tune"]
