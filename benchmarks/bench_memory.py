"""Idle memory (RSS) of a gateway with the ``openai`` backend (issue 18: at most 400 MiB with the default policy).

One command::

    python3 benchmarks/bench_memory.py [--write-doc]

Starts the stub upstream of ``bench_overhead.py`` (a subprocess) and, one at a time, ``python3 -m gateway.cli serve``
with ``GREENLIST_BACKEND=openai`` against it (a fresh ``GREENLIST_HOME`` each, audit on as shipped) for each policy
folder (the gateway serves every policy of the folder its ``--policy`` is in): a policy without guardrails,
``policies/default.yaml`` alone, and the shipped ``policies/`` folder (default, creative-writing, factual-qa,
kids). Once
``/healthz`` answers it sends a few chat completions (English, then one German prompt, which loads the
multilingual toxicity heads), waits ``--settle`` seconds and reads ``VmRSS`` and ``VmHWM`` (peak) of the server
process from ``/proc/<pid>/status``, and whether torch was imported (``/proc/<pid>/maps``). ``--write-doc`` writes
the section "Gateway memory (openai backend)" of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_overhead import (  # noqa: E402 - after the sys.path line, as the other benchmarks
    MODEL,
    free_port,
    greenlist_target,
    spawn,
    stop,
    wait_ready,
)

SECTION = "Gateway memory (openai backend)"
ENGLISH = ["Write two sentences about lighthouses.", "What is the capital of France?"]
GERMAN = "Schreibe zwei Sätze über Leuchttürme an der Nordsee."


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/<pid>/status``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def loaded(pid: int, library: str) -> bool:
    """Whether a shared library whose path contains ``library`` (e.g. ``libtorch_cpu``) is mapped in ``pid``."""
    return library in Path(f"/proc/{pid}/maps").read_text()


def measure(name: str, policy: Path, stub_url: str, work: Path, settle_s: float, german: bool) -> list[str]:
    """Start one gateway, send the prompts, and return its table row."""
    target = greenlist_target(name, policy, stub_url, work)
    try:
        wait_ready(target, 600)
        assert target.proc is not None
        pid = target.proc.pid
        ready = status_kib(pid, "VmRSS")
        prompts = ENGLISH + ([GERMAN] if german else [])
        with httpx.Client(timeout=120) as client:
            for prompt in prompts:
                resp = client.post(target.url, json={"model": MODEL, "messages": [{"role": "user", "content": prompt}]})
                resp.raise_for_status()
        time.sleep(settle_s)  # idle: let background threads (audit writer, shadow checks) settle
        idle, peak = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        return [
            name,
            f"{ready / 1024:.0f} MiB",
            f"**{idle / 1024:.0f} MiB**",
            f"{peak / 1024:.0f} MiB",
            "yes" if loaded(pid, "libtorch_cpu") else "no",
            "yes" if loaded(pid, "onnxruntime") else "no",
        ]
    finally:
        stop(target.proc)


def main() -> None:
    """Measure each policy and print (and with ``--write-doc`` write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading RSS")
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--only", help="measure only the policy of this name")
    args = parser.parse_args()

    from benchmarks.report import machine, markdown_table, publish

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        (work / "bare").mkdir()
        bare = work / "bare" / "bare.yaml"
        bare.write_text("name: bare\n")
        (work / "default").mkdir()
        default = work / "default" / "default.yaml"
        default.write_text((ROOT / "policies" / "default.yaml").read_text())
        shipped = ROOT / "policies" / "default.yaml"
        stub_port = free_port()
        stub = spawn(
            [sys.executable, str(ROOT / "benchmarks" / "bench_overhead.py"), "--serve-stub", str(stub_port)],
            dict(os.environ),
            work / "stub.log",
        )
        stub_url = f"http://127.0.0.1:{stub_port}/v1"
        rows = []
        try:
            for name, policy, german in (
                ("no guardrails", bare, False),
                ("default policy (English prompts)", default, False),
                ("default policy (+ one German prompt)", default, True),
                ("shipped policies folder (4 policies)", shipped, False),
            ):
                if args.only and args.only != name:
                    continue
                rows.append(measure(name, policy, stub_url, work, args.settle, german))
                print(rows[-1], flush=True)
        finally:
            stop(stub)
    lines = [
        machine(),
        "",
        "`python3 -m gateway.cli serve` with `GREENLIST_BACKEND=openai` against a stub upstream, a fresh "
        "`GREENLIST_HOME` each (so no protected corpus and no citation database is loaded), audit log on. "
        "*Ready*: after `/healthz` answered; *idle*: after two English chat completions (and, where named, one "
        f"German one, which routes to the multilingual toxicity heads) and {args.settle:.0f} s idle; *peak*: "
        "`VmHWM`. `python3 benchmarks/bench_memory.py --write-doc`. Target (issue 18): idle <= 400 MiB.",
        "",
        *markdown_table(["policy", "RSS ready", "RSS idle", "peak", "torch loaded", "onnxruntime loaded"], rows),
    ]
    publish(SECTION, lines, write=args.write_doc)


if __name__ == "__main__":
    main()
