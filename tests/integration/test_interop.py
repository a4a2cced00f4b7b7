"""Interoperability with transformers' own watermark (``WatermarkingConfig``, lefthash, same hashing key)."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, WatermarkDetector, WatermarkingConfig

from watermark.keys import KeyRing, WatermarkKey
from watermark.processor import WatermarkLogitsProcessor
from watermark.verifier import Verifier

HASH_KEY = 424242


@pytest.fixture(scope="module")
def lm(gateway):
    model, tok = gateway.backend.model, gateway.backend.tokenizer
    key = WatermarkKey("hf-compat", kind="transformers-lefthash", hash_key=HASH_KEY, vocab_size=model.config.vocab_size)
    config = WatermarkingConfig(
        bias=2.5, greenlist_ratio=0.25, hashing_key=HASH_KEY, seeding_scheme="lefthash", context_width=1
    )
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Write a long story about a fox in winter."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    return model, tok, key, config, prompt


def generate(model, prompt, **kwargs):
    torch.manual_seed(1)
    with torch.inference_mode():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=True,
            top_k=0,
            temperature=1.0,
            max_new_tokens=150,
            min_new_tokens=120,
            **kwargs,
        )
    return out[:, prompt.shape[1] :]


def test_transformers_watermark_verifies_in_greenlist(lm):
    model, tok, key, config, prompt = lm
    text = tok.decode(generate(model, prompt, watermarking_config=config)[0], skip_special_tokens=True)
    verifier = Verifier(KeyRing(key, (key,)), tok, "smollm2", 0.25, "lefthash")
    result = verifier.verify(text)
    assert result["watermarked"] and result["key_id"] == "hf-compat", result
    other = WatermarkKey("other", kind="transformers-lefthash", hash_key=HASH_KEY + 1, vocab_size=key.vocab_size)
    assert not Verifier(KeyRing(other, (other,)), tok, "smollm2", 0.25, "lefthash").verify(text)["watermarked"]


def test_greenlist_watermark_detected_by_transformers(lm):
    model, tok, key, config, prompt = lm
    processor = WatermarkLogitsProcessor(key.scheme(0.25, "lefthash"), delta=2.5)
    ids = generate(model, prompt, logits_processor=LogitsProcessorList([processor]))
    detector = WatermarkDetector(
        model_config=model.config, device="cpu", watermarking_config=config, ignore_repeated_ngrams=True
    )
    result = detector(ids, return_dict=True)
    assert bool(result.prediction[0]) and result.z_score[0] > 4, result.z_score
    plain = generate(model, prompt)
    assert not bool(detector(plain, return_dict=True).prediction[0])
