"""End-to-end check of the vLLM watermark plugin on a GPU host: generate through vLLM, verify through Greenlist.

Run on the host of a vLLM server started as in ``docs/vllm.md`` (plugin installed, key file configured), with a
Greenlist gateway that holds the same key file and the same tokenizer (``GREENLIST_MODEL`` = the vLLM model)::

    python scripts/vllm_watermark_check.py --vllm-url http://localhost:8000/v1 --model Qwen/Qwen2.5-1.5B-Instruct \\
        --greenlist-url http://localhost:8080 --key-id wm-robust-20261203-a1b2c3

It sends ``--n`` (50) chat requests with ``"vllm_xargs": {"greenlist_watermark_key_id": KEY_ID}`` (exactly
``--max-tokens`` new tokens each, sampled), verifies every answer with ``POST /v1/watermark/verify`` and prints the
TPR at z ≥ 4 and of the verdict; then ``--controls`` (5) requests without the key id, which must not verify
(a plugin that biases every request, or a verifier that says yes to everything, fails here). Exit status 0 when the
TPR at z ≥ 4 reaches ``--min-tpr`` (0.9) and no control verifies, else 1.

Only ``httpx`` is needed (a Greenlist dependency). Unrun in this repository: no GPU host with vLLM was available.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

TOPICS = [
    "a lighthouse keeper",
    "the history of tea",
    "a city under snow",
    "how bridges are built",
    "a lost letter",
    "the life of bees",
    "a night train across Europe",
    "an old clockmaker",
    "the first day at a new school",
    "a storm at sea",
]
FORMS = [
    "Write a short story about {}.",
    "Describe {} in detail.",
    "Write a long letter to a friend about {}.",
    "Explain {} to a curious child.",
    "Write an essay about {}.",
]


def prompts(n: int) -> list[str]:
    """``n`` varied open-ended prompts (long answers carry more watermark evidence)."""
    every = [form.format(topic) for form in FORMS for topic in TOPICS]
    return [every[i % len(every)] for i in range(n)]


def generate(client: httpx.Client, args: argparse.Namespace, prompt: str, key_id: str | None) -> str:
    """One chat completion from vLLM; with ``key_id`` the request asks the plugin for the watermark."""
    body: dict[str, Any] = {
        "model": args.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": args.max_tokens,
        "min_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": 1.0,
    }
    if key_id:
        body["vllm_xargs"] = {"greenlist_watermark_key_id": key_id}
    resp = client.post(
        f"{args.vllm_url.rstrip('/')}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {args.vllm_api_key}"} if args.vllm_api_key else {},
    )
    resp.raise_for_status()
    return str(resp.json()["choices"][0]["message"]["content"])


def verify(client: httpx.Client, args: argparse.Namespace, text: str) -> dict[str, Any]:
    """Greenlist's verdict on ``text`` (``POST /v1/watermark/verify``)."""
    headers = {"Authorization": f"Bearer {args.greenlist_api_key}"} if args.greenlist_api_key else {}
    resp = client.post(f"{args.greenlist_url.rstrip('/')}/v1/watermark/verify", json={"text": text}, headers=headers)
    resp.raise_for_status()
    return dict(resp.json())


def main() -> int:
    """Generate, verify, print the TPR; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vllm-url", default="http://localhost:8000/v1")
    parser.add_argument("--vllm-api-key", default="")
    parser.add_argument("--model", required=True, help="the model vLLM serves (Greenlist must use its tokenizer)")
    parser.add_argument("--greenlist-url", default="http://localhost:8080")
    parser.add_argument("--greenlist-api-key", default="")
    parser.add_argument("--key-id", required=True, help="a watermark key id both servers hold")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--controls", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8, help="parallel requests (exercises batching)")
    parser.add_argument("--min-tpr", type=float, default=0.9)
    args = parser.parse_args()

    with httpx.Client(timeout=600) as client, ThreadPoolExecutor(args.concurrency) as pool:
        wm_prompts, control_prompts = prompts(args.n), prompts(args.controls)
        texts = list(pool.map(lambda p: generate(client, args, p, args.key_id), wm_prompts))
        controls = list(pool.map(lambda p: generate(client, args, p, None), control_prompts))
        results = list(pool.map(lambda t: verify(client, args, t), texts))
        control_results = list(pool.map(lambda t: verify(client, args, t), controls))

    for i, r in enumerate(results):
        print(
            f"{i:3d}  z = {r['z_score']:6.2f}  T = {r['num_tokens_scored']:4d}  {r['verdict']:16s}  "
            f"key {r.get('key_id')}  scheme {r.get('scheme', {}).get('seeding_scheme')}"
        )
    tpr_z = sum(r["z_score"] >= 4 for r in results) / max(len(results), 1)
    tpr_verdict = sum(bool(r["watermarked"]) for r in results) / max(len(results), 1)
    false_alarms = sum(bool(r["watermarked"]) or r["z_score"] >= 4 for r in control_results)
    print(f"\nwatermarked requests: {len(results)}; TPR at z >= 4: {tpr_z:.3f}; TPR of the verdict: {tpr_verdict:.3f}")
    print(f"control requests without the key id: {len(control_results)}; verified as watermarked: {false_alarms}")
    if tpr_z < args.min_tpr:
        print(
            "FAIL: TPR below --min-tpr. If vLLM logged 'Greenlist watermark NOT APPLIED', restart it with "
            "--logits-processors watermark.vllm_plugin:GreenlistWatermarkLogitsProcessor (docs/vllm.md); check "
            "that Greenlist holds the same key file and uses the vLLM model's tokenizer (GREENLIST_MODEL)."
        )
    if false_alarms:
        print("FAIL: a request without the key id verified as watermarked.")
    return 0 if tpr_z >= args.min_tpr and not false_alarms else 1


if __name__ == "__main__":
    sys.exit(main())
