"""Watermarked text without a language model: what a generator with a very large δ would write."""

from __future__ import annotations

from typing import Any

import numpy as np


def green_text(scheme: Any, tokenizer: Any, n: int = 80, seed: int = 0) -> str:
    """Text whose every generated token is green under ``scheme``.

    Args:
        scheme: A green-list scheme (``green_mask(context, vocab_size)``).
        tokenizer: The gateway's tokenizer: a :class:`gateway.backends.loading.TokenizerFile` (its ``backend``,
            a ``tokenizers.Tokenizer``, is used) or a ``tokenizers.Tokenizer``.
        n: Tokens to generate after a fixed opening.
        seed: Seed of the choice among the green words.
    """
    tok = getattr(tokenizer, "backend", tokenizer)
    vocab = tok.get_vocab()
    words = np.array(
        sorted(i for t, i in vocab.items() if t.startswith("Ġ") and t[1:].isalpha() and t[1:].islower() and len(t) > 4)
    )
    ids = tok.encode("Once upon a time, the", add_special_tokens=False).ids
    rng = np.random.default_rng(seed)
    for _ in range(n):
        mask = scheme.green_mask(ids, tok.get_vocab_size())
        ids.append(int(rng.choice(words[mask[words]])))
    return str(tok.decode(ids))
