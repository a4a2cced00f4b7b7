"""The generation side of the watermark: a transformers ``LogitsProcessor``.

Kirchenbauer et al., ICML 2023, Algorithm 2 ("soft red list"): add δ (delta)
to the logits of every green token before sampling.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from watermark.scheme import Scheme


class WatermarkLogitsProcessor(LogitsProcessor):
    """Adds δ to green-list logits at each decoding step.

    Args:
        scheme: The green-list scheme (key, γ, seeding scheme).
        delta: δ, the logit bias added to green tokens (> 0; the paper uses 1-10,
            2.0 is its recommended default).

    Raises:
        ValueError: for ``delta <= 0``.
    """

    def __init__(self, scheme: Scheme, delta: float = 2.0) -> None:
        if delta <= 0:
            raise ValueError(f"delta must be > 0, got {delta}")
        self.scheme = scheme
        self.delta = float(delta)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Bias ``scores`` (shape ``(batch, vocab)``) given ``input_ids`` (shape ``(batch, length)``).

        A position with fewer tokens before it than the scheme seeds from (a text completion of a one-token
        prompt such as "Hi") is left unbiased: the detector does not score those positions either (it scores
        token ``i`` of a text only from ``i >= ngram_len - 1``), so generation and verification agree.
        """
        vocab = scores.shape[-1]
        width = self.scheme.context_width
        if input_ids.shape[1] < self.scheme.ngram_len - 1:
            return scores
        for row in range(input_ids.shape[0]):
            mask = self.scheme.green_mask(input_ids[row, max(0, input_ids.shape[1] - width) :].tolist(), vocab)
            scores[row] += torch.from_numpy(mask).to(scores.dtype) * self.delta
        return scores
