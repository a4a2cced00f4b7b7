"""Latency Greenlist adds in front of an upstream, side by side with LiteLLM's proxy (issue #16 item 6).

One command::

    python3 benchmarks/bench_overhead.py --litellm /tmp/litellm-venv/bin/litellm --requests 200 --write-doc

1. Starts a stub OpenAI-compatible upstream (a subprocess of this script: a bare ASGI app under uvicorn) that
   answers every non-streamed ``/v1/chat/completions`` at once with the same 150-word answer.
2. Starts the targets as subprocesses: LiteLLM's proxy (its own virtual environment, ``--litellm``; skipped with a
   message when absent) with an ``openai/`` model pointing at the stub, and two Greenlist servers
   (``python3 -m gateway.cli serve``, ``GREENLIST_BACKEND=openai``) against the stub: one with a policy that has
   no guardrails, one with ``policies/default.yaml`` (toxicity on input and output, protected content,
   citations). Each gets a fresh ``GREENLIST_HOME`` (so no protected corpus and no citation database is loaded).
3. Warms every target up (the first requests load models), then sends ``--requests`` rounds, one request per
   target per round, sequentially (one request in flight at a time, so the 2-core machine is not saturated by
   the client), the order of the targets rotating from round to round, all with the same ~200-character prompt
   of the round. Every round also calls the stub directly; a target's *added* latency in a round is its latency
   minus the direct call's latency in the same round (paired), and also minus the median direct latency.
4. Prints a p50/p95 table of total and added latency, the ratio of Greenlist-default's added p50 to LiteLLM's,
   and Greenlist's per-guardrail latencies (``latency_ms`` of each guardrail in the response's ``greenlist``
   object) and decisions (``x-greenlist-decision``); ``--write-doc`` writes the section
   "Gateway overhead vs LiteLLM proxy" of ``docs/benchmarks.md``; ``--json`` saves the raw latencies.

Targets (issue #16): Greenlist with the default policy adds <= 30 ms p50 and <= 60 ms p95 over the direct call,
and its added p50 is at most 1.5x LiteLLM proxy's in the same run.

Long module: one self-contained command (stub upstream, server start-up, measurement, doc writing) that others can
run with nothing but this file; the parts are separated by comment rules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTION = "Gateway overhead vs LiteLLM proxy"
MODEL = "stub-model"

# The stub's one answer: 150 words of ordinary English prose (checked by ``answer_words``).
ANSWER = (
    "Sourdough bread relies on a starter, a living mixture of flour and water that hosts wild yeast and "
    "friendly bacteria. To keep a starter healthy, feed it every day with equal weights of flour and water and "
    "leave it somewhere warm until it doubles in size. When you are ready to bake, mix the active starter with "
    "flour, water and salt, then let the dough rest so the gluten can develop. Over the next few hours, fold "
    "the dough gently every half hour to build strength without heavy kneading. Once it has risen by about "
    "half, shape it into a tight round and place it in a floured basket. A slow proof in the refrigerator "
    "overnight deepens the flavour and makes the loaf easier to score. Bake it in a hot covered pot for "
    "twenty minutes, then remove the lid and continue until the crust turns a deep golden brown."
)

# ~200-character prompts, one per round in turn (every target gets the same prompt in a round).
PROMPTS = [
    "I have been baking yeasted bread for a year and would like to try sourdough. Could you explain how to keep "
    "a starter alive and what the main steps are, from mixing the dough to baking the finished loaf?",
    "My sourdough loaves come out flat and dense even though the starter bubbles nicely. What are the usual "
    "reasons for this, and how should I change the way I fold, shape and proof the dough the next time I bake?",
    "Could you walk me through a simple weekend sourdough schedule for a beginner, including when to feed the "
    "starter, when to mix, how long to proof and at what temperature I should bake the finished bread?",
    "A friend gave me some of her sourdough starter. How do I look after it in a small flat, how often should I "
    "feed it, and how can I tell when it is strong enough to raise a good loaf of bread at home?",
    "What is the difference between baking sourdough in a covered cast iron pot and on an open baking stone, and "
    "which method gives a better crust for a home baker who only has an ordinary electric oven?",
    "Please describe how to shape a round sourdough loaf so that it holds its form, and explain why bakers "
    "often leave the shaped dough to proof overnight in the refrigerator before baking it the next day.",
    "I would like to bake bread with my children this weekend. Can you describe the sourdough process in plain "
    "words, with the steps in order and a rough idea of how long each of these steps will usually take?",
    "Why do recipes tell you to let sourdough bread cool for an hour before cutting it? I usually slice it "
    "straight from the oven and the inside seems a bit gummy. Is that the real reason for the advice, then?",
]


def fresh_texts(rounds: int, data: Path | None = None) -> tuple[list[str], list[str]]:
    """One distinct (prompt, answer) pair per round, so that no guardrail answers from its unit cache.

    Answers: consecutive ``ag_news_long`` paragraphs (benign news, measured on and never trained on) joined and
    cut at the first sentence end past 150 words. Prompts: the first 200 characters (cut at a space) of
    British-novel chunks. Texts come in file order (deterministic). Without the shared data: the fixed
    :data:`PROMPTS` and :data:`ANSWER`, repeated (then the guardrails' caches answer after the first round).

    Args:
        rounds: Pairs wanted (warm-up rounds included).
        data: The shared data folder (default ``../shared/data`` beside the checkout).

    Returns:
        ``(prompts, answers)``, each of length ``rounds``.
    """
    import csv

    from greenlist.sentences import split_sentences

    data = data or ROOT.parent / "shared" / "data"
    news, novels = data / "toxicity_extra" / "ag_news_long.csv", data / "human_text" / "british_novels.jsonl"
    if not (news.exists() and novels.exists()):
        print(f"shared data not found under {data}: fixed prompts and answer (cached after one round)", file=sys.stderr)
        return [PROMPTS[i % len(PROMPTS)] for i in range(rounds)], [ANSWER] * rounds
    with open(news, newline="", encoding="utf-8") as f:
        paragraphs = [r["text"] for r in csv.DictReader(f)]
    answers, buf = [], ""
    for para in paragraphs:
        buf = f"{buf} {para}".strip()
        if len(buf.split()) < 150:
            continue
        end = next(b for a, b in split_sentences(buf) if len(buf[:b].split()) >= 150)
        answers.append(buf[:end])
        buf = ""
        if len(answers) == rounds:
            break
    prompts = []
    for line in novels.read_text("utf-8").splitlines():
        text = " ".join(json.loads(line)["text"].split())
        prompts.append(text[: text.rfind(" ", 0, 201)] if len(text) > 200 else text)
        if len(prompts) == rounds:
            break
    if len(answers) < rounds or len(prompts) < rounds:
        raise SystemExit(f"only {len(answers)} answers / {len(prompts)} prompts for {rounds} rounds")
    return prompts, answers


NO_GUARDRAIL_POLICY = """\
# bench_overhead.py: the gateway with no guardrails at all (framework overhead only)
name: no-guardrails
description: No input or output guardrails; used to measure the gateway's own overhead.
watermark:
  enabled: false
input: []
output: []
"""


# --------------------------------------------------------------------------------------------------- the stub


def stub_app(answers: dict[str, str], default: str = ANSWER) -> Any:
    """A bare ASGI app: an OpenAI-compatible upstream that answers every completion at once.

    Args:
        answers: ``{prompt: answer}``: the answer to a request whose last message is a known prompt.
        default: The answer to any other request.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"].rstrip("/")
        if scope["method"] == "GET" and path.endswith("/models"):
            out: dict[str, Any] = {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "stub"}],
            }
        elif scope["method"] == "GET":
            out = {"status": "ok"}
        else:
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = {}
            if request.get("stream"):
                await _respond(send, 400, {"error": {"message": "the stub does not stream", "type": "invalid"}})
                return
            messages = request.get("messages") or [{}]
            answer = answers.get(str(messages[-1].get("content")), default)
            completion_tokens = round(len(answer.split()) * 1.3)
            chat = path.endswith("/chat/completions")
            choice = (
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
                if chat
                else {"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}
            )
            out = {
                "id": "chatcmpl-stub",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": request.get("model", MODEL),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": 50,
                    "completion_tokens": completion_tokens,
                    "total_tokens": 50 + completion_tokens,
                },
            }
        await _respond(send, 200, out)

    return app


async def _respond(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def serve_stub(port: int, rounds: int) -> None:
    """Run the stub upstream on 127.0.0.1:``port`` until killed (``--serve-stub``), answering the prompts of
    :func:`fresh_texts` ``(rounds)`` with their answers."""
    import uvicorn

    prompts, answers = fresh_texts(rounds)
    app = stub_app(dict(zip(prompts, answers, strict=True)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ------------------------------------------------------------------------------------------------ the targets


@dataclass
class Target:
    """One endpoint under test: its name, chat-completions URL, process and measurements."""

    name: str
    url: str
    model: str
    health_url: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    latencies: list[float | None] = field(default_factory=list)  # ms per round (None: failed)
    added: list[float] = field(default_factory=list)  # ms per round, minus the same round's direct call
    guardrails: dict[str, list[float]] = field(default_factory=dict)  # "input toxicity" -> latency_ms values
    guardrail_sums: list[float] = field(default_factory=list)  # sum of all guardrails' latency_ms per request
    decisions: dict[str, int] = field(default_factory=dict)  # x-greenlist-decision -> count
    errors: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process started by :func:`spawn` (SIGINT, then SIGTERM, then SIGKILL to its group)."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_ready(target: Target, timeout_s: float) -> None:
    """Poll ``target.health_url`` until it answers 200; raise with the log's tail if the process dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if target.proc is not None and target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {target.proc.returncode}:\n{tail(target.log)}")
        try:
            if httpx.get(target.health_url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{target.name} not ready after {timeout_s:.0f} s:\n{tail(target.log)}")


def tail(log: Path | None, n: int = 30) -> str:
    """The last ``n`` lines of a log file."""
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def greenlist_target(
    name: str,
    policy: Path,
    stub_url: str,
    work: Path,
    py_spy: str | None = None,
    checkout: Path = ROOT,
    python: str = sys.executable,
) -> Target:
    """Start ``python -m gateway.cli serve`` (from ``checkout``'s code, on the interpreter ``python``: this one by
    default) with the ``openai`` backend against the stub."""
    port = free_port()
    home = work / f"home-{name}"
    home.mkdir()
    env = {
        **os.environ,
        "GREENLIST_HOME": str(home),
        "GREENLIST_BACKEND": "openai",
        "GREENLIST_UPSTREAM_BASE_URL": stub_url,
        "GREENLIST_UPSTREAM_MODEL": MODEL,
        "GREENLIST_POLICY_WATCH": "false",
    }
    env.pop("GREENLIST_CONFIG", None)
    cmd = [
        python,
        "-m",
        "gateway.cli",
        "serve",
        "--port",
        str(port),
        "--policy",
        str(policy),
        "--log-level",
        "warning",
    ]
    if py_spy:
        fmt = {".txt": "raw", ".svg": "flamegraph"}.get(Path(py_spy).suffix, "speedscope")
        cmd = [
            "py-spy",
            "record",
            "--threads",
            "--format",
            fmt,
            "--rate",
            "200",
            "--output",
            str(Path(py_spy).resolve()),
            "--",
        ] + cmd
    log = work / f"{name}.log"
    base = f"http://127.0.0.1:{port}"
    proc = spawn(cmd, env, log, cwd=checkout)
    return Target(name, f"{base}/v1/chat/completions", MODEL, f"{base}/healthz", proc, log)


def v7_policy(text: str) -> str:
    """The policy ``text`` with ``model: v7`` on every toxicity entry: an earlier default (float32 encoder)."""
    import yaml

    policy = yaml.safe_load(text)
    policy["name"] = f"{policy.get('name', 'policy')}-v7"
    for direction in ("input", "output"):
        section = policy.get(direction) or []
        for entry in section.get("guardrails") or [] if isinstance(section, dict) else section:  # input: {mode, ...}
            if entry.get("type") == "toxicity":
                entry["model"] = "v7"
    return yaml.safe_dump(policy, sort_keys=False)


def pre_call_policy(text: str) -> str:
    """The policy ``text`` with ``input.mode: pre_call``: the prompt checked before the upstream call."""
    import yaml

    policy = yaml.safe_load(text)
    policy["name"] = f"{policy.get('name', 'policy')}-pre-call"
    section = policy.get("input") or []
    policy["input"] = (
        {**section, "mode": "pre_call"} if isinstance(section, dict) else {"mode": "pre_call", "guardrails": section}
    )
    return yaml.safe_dump(policy, sort_keys=False)


POLICY_VARIANTS = {"greenlist-default-pre_call": pre_call_policy, "greenlist-default-v7": v7_policy}
"""Targets that serve the default policy changed by a function of its text (each in a folder of its own)."""


def litellm_target(litellm: str, stub_url: str, work: Path) -> Target:
    """Start LiteLLM's proxy (``litellm --config``) with one ``openai/`` model pointing at the stub."""
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        model_list:
          - model_name: {MODEL}
            litellm_params:
              model: openai/{MODEL}
              api_base: {stub_url}
              api_key: sk-stub
        litellm_settings:
          telemetry: false
        general_settings:
          # no auth, like Greenlist on loopback without API keys (auth: auto); LiteLLM refuses that by default
          dangerously_permit_weak_or_unset_master_key: true
        """)
    )
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_SCHEMA_UPDATE": "true",
    }
    env.pop("PYTHONPATH", None)
    log = work / "litellm.log"
    cmd = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    return Target(
        "litellm",
        f"{base}/v1/chat/completions",
        MODEL,
        f"{base}/health/liveliness",
        spawn(cmd, env, log, cwd=work),
        log,
    )


# ---------------------------------------------------------------------------------------------- measurement


def call(client: httpx.Client, target: Target, prompt: str) -> tuple[float, httpx.Response]:
    """One non-streamed chat completion; (milliseconds, response)."""
    body = {"model": target.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 256}
    start = time.perf_counter()
    response = client.post(target.url, json=body)
    response.read()
    return (time.perf_counter() - start) * 1000.0, response


def record(target: Target, ms: float, response: httpx.Response) -> None:
    """Store one measured request (latency, errors, Greenlist's per-guardrail latencies and decision)."""
    if response.status_code != 200:
        target.latencies.append(None)
        key = f"HTTP {response.status_code}"
        target.errors[key] = target.errors.get(key, 0) + 1
        return
    target.latencies.append(ms)
    if decision := response.headers.get("x-greenlist-decision"):
        target.decisions[decision] = target.decisions.get(decision, 0) + 1
    greenlist = response.json().get("greenlist")
    if not greenlist:
        return
    total = 0.0
    for direction in ("input", "output"):
        for g in (greenlist.get(direction) or {}).get("guardrails", []):
            target.guardrails.setdefault(f"{direction} {g['name']}", []).append(float(g["latency_ms"]))
            total += float(g["latency_ms"])
    target.guardrail_sums.append(total)


def measure(direct: Target, targets: list[Target], prompts: list[str], warmup: int) -> None:
    """Warm up every target on the last ``warmup`` prompts, then one round per other prompt: one request per
    target (direct included), in rotating order.

    Every round has its own prompt (and so answer, :func:`fresh_texts`), so each guardrail scores new text.
    """
    everyone = [direct, *targets]
    clients = {t.name: httpx.Client(timeout=120) for t in everyone}
    rounds = len(prompts) - warmup
    try:
        for i in range(warmup):
            for t in everyone:
                ms, response = call(clients[t.name], t, prompts[rounds + i])
                if response.status_code != 200:
                    raise RuntimeError(
                        f"warm-up request to {t.name} failed: {response.status_code} {response.text[:300]}"
                    )
        for r in range(rounds):
            prompt = prompts[r]
            order = everyone[r % len(everyone) :] + everyone[: r % len(everyone)]
            for t in order:
                ms, response = call(clients[t.name], t, prompt)
                record(t, ms, response)
            if (r + 1) % 50 == 0:
                print(f"  {r + 1}/{rounds} rounds", file=sys.stderr)
        for t in targets:
            t.added = [
                lat - d
                for lat, d in zip(t.latencies, direct.latencies, strict=True)
                if lat is not None and d is not None
            ]
    finally:
        for c in clients.values():
            c.close()


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0-1) of ``values`` (linear interpolation); NaN when empty."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q * 100) - 1))]


# ------------------------------------------------------------------------------------------------- reporting


def summarize(direct: Target, targets: list[Target]) -> dict[str, Any]:
    """p50/p95 of total and added latency per target, the LiteLLM ratio and Greenlist's guardrail breakdown."""
    direct_ms = [x for x in direct.latencies if x is not None]
    direct_p50 = pct(direct_ms, 0.5)
    rows = [{"target": direct.name, "n": len(direct_ms), "p50": direct_p50, "p95": pct(direct_ms, 0.95)}]
    for t in targets:
        ok = [x for x in t.latencies if x is not None]
        vs_median = [x - direct_p50 for x in ok]
        rows.append(
            {
                "target": t.name,
                "n": len(ok),
                "p50": pct(ok, 0.5),
                "p95": pct(ok, 0.95),
                "added_p50": pct(t.added, 0.5),
                "added_p95": pct(t.added, 0.95),
                "added_vs_median_p50": pct(vs_median, 0.5),
                "added_vs_median_p95": pct(vs_median, 0.95),
                "errors": t.errors,
                "decisions": t.decisions,
            }
        )
    by_name = {r["target"]: r for r in rows}
    out: dict[str, Any] = {"rows": rows}
    if "litellm" in by_name and "greenlist-default" in by_name:
        out["ratio_default_vs_litellm"] = by_name["greenlist-default"]["added_p50"] / by_name["litellm"]["added_p50"]
    if "litellm" in by_name and "greenlist-none" in by_name:
        out["ratio_none_vs_litellm"] = by_name["greenlist-none"]["added_p50"] / by_name["litellm"]["added_p50"]
    breakdown = {}
    for t in targets:
        if t.guardrails:
            breakdown[t.name] = {name: {"p50": pct(v, 0.5), "p95": pct(v, 0.95)} for name, v in t.guardrails.items()}
            breakdown[t.name]["all guardrails (sum per request)"] = {
                "p50": pct(t.guardrail_sums, 0.5),
                "p95": pct(t.guardrail_sums, 0.95),
            }
    out["guardrails"] = breakdown
    return out


def table(summary: dict[str, Any]) -> str:
    """The markdown table of :func:`summarize`'s rows."""
    lines = [
        "| target | n | total p50 (ms) | total p95 (ms) | added p50 (ms) | added p95 (ms) | added p50 / p95 vs "
        "median direct (ms) | decisions / errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        if "added_p50" not in r:
            lines.append(f"| {r['target']} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | – | – | – | – |")
            continue
        notes = ", ".join(f"{k} {v}" for k, v in {**r["decisions"], **r["errors"]}.items()) or "–"
        lines.append(
            f"| {r['target']} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | **{r['added_p50']:.1f}** | "
            f"**{r['added_p95']:.1f}** | {r['added_vs_median_p50']:.1f} / {r['added_vs_median_p95']:.1f} | "
            f"{notes} |"
        )
    return "\n".join(lines)


def breakdown_table(summary: dict[str, Any]) -> str:
    """Markdown table of Greenlist's per-guardrail ``latency_ms`` (p50 / p95)."""
    lines = ["| target | guardrail (direction, name) | latency_ms p50 | latency_ms p95 |", "|---|---|---|---|"]
    for target, items in summary["guardrails"].items():
        for name, v in items.items():
            lines.append(f"| {target} | {name} | {v['p50']:.1f} | {v['p95']:.1f} |")
    return "\n".join(lines)


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """The issue's three targets, met or not."""
    rows = {r["target"]: r for r in summary["rows"]}
    out = []
    if (d := rows.get("greenlist-default")) is not None:
        out.append(
            f"Greenlist default: added p50 {d['added_p50']:.1f} ms (target <= 30: "
            f"{'met' if d['added_p50'] <= 30 else 'NOT met'}), added p95 {d['added_p95']:.1f} ms "
            f"(target <= 60: {'met' if d['added_p95'] <= 60 else 'NOT met'})"
        )
    if (ratio := summary.get("ratio_default_vs_litellm")) is not None:
        out.append(
            f"Greenlist default added p50 / LiteLLM added p50 = {ratio:.2f}x (target <= 1.5x: "
            f"{'met' if ratio <= 1.5 else 'NOT met'})"
        )
    if (ratio := summary.get("ratio_none_vs_litellm")) is not None:
        out.append(f"Greenlist without guardrails added p50 / LiteLLM added p50 = {ratio:.2f}x")
    return out


def bf16_note() -> str:
    """Whether this CPU has native bfloat16 (the toxicity guardrail runs int8 ONNX either way since v8)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    vnni = "with" if flags & {"avx512_vnni", "avx_vnni"} else "without"
    bf16 = f"native bfloat16 ({', '.join(native)})" if native else "no native bfloat16"
    return f"{bf16}, {vnni} VNNI; the toxicity guardrail's `precision: auto` runs the int8 ONNX encoder"


def cpu_model() -> str:
    """``lscpu``'s model name (or ``platform.processor()``)."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    import platform

    return platform.processor() or "unknown CPU"


def litellm_version(litellm: str) -> str:
    """The installed LiteLLM version (from its venv's python), or "?"."""
    python = Path(litellm).with_name("python")
    try:
        return (
            subprocess.run(
                [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            or "?"
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def doc_body(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The markdown of the docs/benchmarks.md section (tables and run facts; the reading is added by hand)."""
    load = (
        f"1-min load average {meta['load_before'][0]:.2f} before the run and {meta['load_after'][0]:.2f} after "
        f"(5-min {meta['load_before'][1]:.2f} / {meta['load_after'][1]:.2f}) on {meta['cpus']} cores"
    )
    shared = (
        " The cores were shared with other jobs during the run (load above the core count), so absolute "
        "numbers are pessimistic; the targets were measured interleaved in one run so they share that noise."
        if max(meta["load_before"][0], meta["load_after"][0]) > meta["cpus"] * 0.75
        else ""
    )
    return "\n\n".join(
        [
            f"Machine: {meta['cpus']}-core {meta['cpu']} ({meta['arch']}; {meta.get('bf16', '?')}), "
            f"{meta['mem_gib']} GiB RAM, Python "
            f"{meta['python']}, no GPU; date {meta['date']}; commit `{meta['commit']}`; LiteLLM {meta['litellm']}. "
            f"{load}.{shared}",
            f"Command: `{meta['command']}` ({meta['wall_s']:.0f} s wall).",
            "Setup: a stub OpenAI-compatible upstream answers every non-streamed chat completion at once with a "
            f"150-word answer of its own per round ({meta['answer_words']} words on average: consecutive "
            "`ag_news_long` paragraphs cut at a sentence end, benign news); prompts are the first 200 characters of "
            f"British-novel chunks ({meta['prompt_chars']} characters on average), one per round: no guardrail can "
            "answer a round from its cache. Each round sends one request to every target, "
            "sequentially (one in flight), in an order that rotates from round to round, all with the round's prompt; "
            f"{meta['warmup']} warm-up rounds first. *Added* = the request's latency minus the direct call's latency in "
            "the same round (paired); the next column subtracts the median direct latency instead. Client: httpx, "
            "keep-alive connection per target. Targets: `direct` = the stub; `litellm` = LiteLLM's proxy "
            "(`litellm --config`, an `openai/` model at the stub, no master key: like Greenlist, whose auth is off on "
            "loopback without API keys); `greenlist-none` = `python3 -m gateway.cli serve "
            "--policy <no guardrails>` with `GREENLIST_BACKEND=openai`; `greenlist-default` = the same with "
            "`policies/default.yaml` (toxicity on input and output, protected content with no corpus registered, "
            "citations with no database loaded; audit log on, as by default; `input.mode: during_call`: the upstream is called "
            "while the prompt is checked); `greenlist-default-pre_call` = the default policy with `input.mode: pre_call` "
            "(prompt checked first); `greenlist-default-v7` = the default policy with `model: v7` on its two toxicity entries (an earlier default, until 2026-12-06: the same features on the "
            "float32 encoder).",
            table(summary),
            "\n".join(f"* {line}" for line in verdict_lines(summary)),
            "Greenlist's own per-guardrail time (`latency_ms` of each guardrail in the response's `greenlist` object; "
            "measured in the worker thread that runs a direction's guardrails one after the other, so the one hand-off "
            "to that thread per direction is not in it):",
            breakdown_table(summary),
        ]
    )


def kept_reading(doc: Path = ROOT / "docs" / "benchmarks.md") -> str:
    """The hand-written ``### Reading`` subsection of the section already in ``doc`` (kept across reruns), or ""."""
    if not doc.exists():
        return ""
    text = doc.read_text()
    start = text.find(f"## {SECTION}\n")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    at = section.find("\n### Reading")
    return "\n" + section[at:].rstrip() if at >= 0 else ""


def report(summary: dict[str, Any], meta: dict[str, Any], write_doc: bool) -> None:
    """Print the summary tables; with ``write_doc`` also write them into docs/benchmarks.md."""
    print(table(summary))
    print()
    for line in verdict_lines(summary):
        print(line)
    print()
    print(breakdown_table(summary))
    print(
        f"\nload average before {meta['load_before'][0]:.2f}, after {meta['load_after'][0]:.2f} ({meta['cpus']} cores)"
    )
    if write_doc:
        from benchmarks.report import write_section

        write_section(SECTION, doc_body(summary, meta) + kept_reading())
        print(f'wrote "{SECTION}" in docs/benchmarks.md', file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Targets: direct (always), litellm, greenlist-none, greenlist-default, "
        "greenlist-default-pre_call (the default policy with input.mode: pre_call), "
        "greenlist-default-v7 (the default policy with model: v7, an earlier default, on its "
        "toxicity entries).",
    )
    parser.add_argument("--requests", type=int, default=200, help="measured requests per target (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up rounds before measuring (default 10)")
    parser.add_argument(
        "--litellm",
        default="/tmp/litellm-venv/bin/litellm",
        help="LiteLLM's `litellm` executable in its own venv (skipped when absent)",
    )
    parser.add_argument(
        "--targets",
        default="litellm,greenlist-none,greenlist-default,greenlist-default-pre_call,greenlist-default-v7",
        help="comma-separated targets besides the direct call (default: all five)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. a git worktree of an earlier commit): its gateway serves the default policy "
        "as target greenlist-default-baseline, interleaved with this checkout's (compare code changes in one run)",
    )
    parser.add_argument(
        "--baseline-python",
        default=sys.executable,
        help="the interpreter that serves --baseline (default: this one, so both checkouts share its installed "
        "packages; give another virtual environment's python to compare a dependency change)",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        default=ROOT / "policies" / "default.yaml",
        help="policy of the greenlist-default target (default policies/default.yaml)",
    )
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for each server")
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="record one Greenlist target with py-spy (OUT.txt: collapsed "
        "stacks, OUT.svg: flame graph, else speedscope JSON); needs `py-spy` on PATH; perturbs that "
        "target's latency",
    )
    parser.add_argument(
        "--py-spy-target",
        default="greenlist-default",
        help="the Greenlist target --py-spy records (default greenlist-default)",
    )
    parser.add_argument("--json", type=Path, help="write the summary and raw latencies to this file")
    parser.add_argument("--write-doc", action="store_true", help=f'write the section "{SECTION}" of docs/benchmarks.md')
    parser.add_argument("--date", default=date.today().isoformat(), help="date written in the doc")
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="print (and with --write-doc write) the results of a --json file"
    )
    parser.add_argument("--serve-stub", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_stub:
        serve_stub(args.serve_stub, args.warmup + args.requests)
        return 0

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        report(saved["summary"], saved["meta"], args.write_doc)
        return 0

    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(wanted) - {"litellm", "greenlist-none", "greenlist-default", *POLICY_VARIANTS}
    if unknown:
        parser.error(f"unknown targets: {sorted(unknown)}")
    if "litellm" in wanted and not (Path(args.litellm).is_file() and os.access(args.litellm, os.X_OK)):
        print(
            f"LiteLLM not found at {args.litellm}: skipping the litellm target (install it in its own venv: "
            "python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]')",
            file=sys.stderr,
        )
        wanted.remove("litellm")

    prompts, answers = fresh_texts(args.warmup + args.requests)  # the stub subprocess makes the same pairs
    load_before = os.getloadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    stub_port = free_port()
    stub_url = f"http://127.0.0.1:{stub_port}/v1"
    stub_proc = spawn(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            *("--serve-stub", str(stub_port), "--warmup", str(args.warmup), "--requests", str(args.requests)),
        ],
        dict(os.environ),
        work / "stub.log",
    )
    direct = Target("direct", f"{stub_url}/chat/completions", MODEL, f"{stub_url}/models", stub_proc, work / "stub.log")
    targets: list[Target] = []

    def spy(name: str) -> str | None:
        return args.py_spy if name == args.py_spy_target else None

    try:
        wait_ready(direct, 60)
        if "litellm" in wanted:
            targets.append(litellm_target(args.litellm, stub_url, work))
        if "greenlist-none" in wanted:
            (work / "none").mkdir()
            (work / "none" / "no-guardrails.yaml").write_text(NO_GUARDRAIL_POLICY)
            policy = work / "none" / "no-guardrails.yaml"
            targets.append(greenlist_target("greenlist-none", policy, stub_url, work, spy("greenlist-none")))

        def alone(folder: str) -> Path:
            """The policy file copied alone into its folder, so a server loads this policy only (policies/ also
            holds routing and others)."""
            (work / folder).mkdir()
            return Path(shutil.copy(args.policy, work / folder / args.policy.name))

        if "greenlist-default" in wanted:
            policy = alone("default")
            targets.append(greenlist_target("greenlist-default", policy, stub_url, work, spy("greenlist-default")))
        for name, variant in POLICY_VARIANTS.items():
            if name in wanted:
                (work / name).mkdir()
                policy = work / name / args.policy.name
                policy.write_text(variant(args.policy.read_text()))
                targets.append(greenlist_target(name, policy, stub_url, work, spy(name)))
        if args.baseline is not None:
            name = "greenlist-default-baseline"
            targets.append(
                greenlist_target(
                    name, alone("baseline"), stub_url, work, spy(name), args.baseline, args.baseline_python
                )
            )
        for t in targets:
            wait_ready(t, args.startup_timeout)
            print(f"{t.name} ready ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        print(
            f"warm-up {args.warmup} rounds, then {args.requests} measured rounds over "
            f"{', '.join(t.name for t in [direct, *targets])}",
            file=sys.stderr,
        )
        measure(direct, targets, prompts, args.warmup)
    finally:
        for t in targets:
            stop(t.proc)
        stop(stub_proc)
        for home in work.glob("home-*"):  # ~0.5 GiB each (the embedded model converted at start-up); logs stay
            shutil.rmtree(home, ignore_errors=True)
    load_after = os.getloadavg()

    summary = summarize(direct, targets)
    commit = (
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        or "?"
    )
    meta = {
        "cpu": cpu_model(),
        "bf16": bf16_note(),
        "cpus": os.cpu_count(),
        "arch": os.uname().machine,
        "python": sys.version.split()[0],
        "mem_gib": _mem_gib(),
        "date": args.date,
        "commit": commit,
        "litellm": litellm_version(args.litellm) if any(t.name == "litellm" for t in targets) else "not run",
        "load_before": load_before,
        "load_after": load_after,
        "wall_s": time.monotonic() - started,
        "warmup": args.warmup,
        "answer_words": round(statistics.mean(len(a.split()) for a in answers)),
        "prompt_chars": round(statistics.mean(len(p) for p in prompts)),
        "command": "python3 benchmarks/bench_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"logs in {work}", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "summary": summary,
                    "meta": meta,
                    "raw": {
                        t.name: {"latencies": t.latencies, "added": t.added, "guardrails": t.guardrails}
                        for t in [direct, *targets]
                    },
                },
                indent=1,
            )
        )
    report(summary, meta, args.write_doc)
    return 0


def _mem_gib() -> str:
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        return f"{kb / 2**20:.0f}"
    except (OSError, StopIteration, ValueError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
