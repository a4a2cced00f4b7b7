"""Writing benchmark results into ``docs/benchmarks.md``, one ``## `` section per benchmark."""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by its script in `benchmarks/`; rerun it to refresh.\n"


def shared_data(*parts: str) -> Path:
    """``../shared/data/<parts>`` beside the clone (a git worktree one level deeper finds it one level further up)."""
    root = Path(__file__).resolve().parent.parent
    for base in (root.parent, root.parent.parent):
        if (base / "shared" / "data").joinpath(*parts).exists():
            return (base / "shared" / "data").joinpath(*parts)
    return (root.parent / "shared" / "data").joinpath(*parts)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table as lines: ``header`` then ``rows`` (cells already formatted)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def machine() -> str:
    """One line describing this machine and today's date."""
    return (
        f"Machine: {os.cpu_count()}-core {cpu_model()} ({platform.machine()}), "
        f"{_memory_gib()} GiB RAM, Python {platform.python_version()}; date {date.today().isoformat()}."
    )


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (with ``AMX`` / ``AVX512-BF16`` when it has native bf16)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    extras = [label for flag, label in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    return f"{name} ({', '.join(extras)})" if extras else name


def _memory_gib() -> str:
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        return f"{kb / 2**20:.0f}"
    except (OSError, StopIteration, ValueError):
        return "?"


def write_section(title: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the section ``## {title}`` of ``doc`` with ``body``.

    Args:
        title: Section heading without the ``## ``.
        body: Markdown of the section (without its heading).
        doc: The markdown file (default ``docs/benchmarks.md``).
    """
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    doc.write_text(text)


def publish(title: str, lines: list[str], write: bool = True, doc: Path = DOC) -> None:
    """Print a benchmark's Markdown lines and, when ``write``, make them the section ``## {title}`` of ``doc``."""
    body = "\n".join(lines)
    print(body, flush=True)
    if write:
        write_section(title, body, doc)
