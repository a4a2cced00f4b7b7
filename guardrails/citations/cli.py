"""``greenlist citations``: load citation databases, list them, check a text.

Mounted by the main CLI as ``app.add_typer(citations_app, name="citations")``::

    greenlist citations load refs.bib more.jsonl --name my-papers
    greenlist citations list
    greenlist citations check answer.txt [--db my-papers] [--json]
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Citation databases for the citation-checking guardrail.", no_args_is_help=True)


@app.command("load")
def load(
    files: list[Path] = typer.Argument(..., help="BibTeX (.bib), CSL-JSON (.json) or JSONL (.jsonl) files."),
    name: str | None = typer.Option(None, "--name", "-n", help="Database name (default: first file's stem)."),
    home: Path | None = typer.Option(None, "--home", help="GREENLIST_HOME override."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Read FILES, normalise and embed the records, and save them as database NAME (replacing it)."""
    from rich.console import Console

    from guardrails.citations.database import CitationDatabase, check_name
    from guardrails.citations.records import load_file

    console = Console(stderr=True)
    db_name = name or Path(files[0]).stem
    try:
        check_name(db_name)
        records = []
        for path in files:
            recs = load_file(path)
            console.print(f"{path}: {len(recs)} records")
            records.extend(recs)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not records:
        console.print("[red]error:[/red] no records with a title found; nothing saved")
        raise typer.Exit(2)
    db = CitationDatabase.build(db_name, records, progress=not no_progress)
    directory = db.save(home)
    typer.echo(f"saved {len(db)} records as '{db_name}' in {directory}")


@app.command("list")
def list_cmd(home: Path | None = typer.Option(None, "--home", help="GREENLIST_HOME override.")) -> None:
    """List the saved citation databases (name, records, saved time, path)."""
    from rich.console import Console
    from rich.table import Table

    from guardrails.citations.database import list_databases

    metas = list_databases(home)
    if not metas:
        typer.echo("no citation databases; create one with: greenlist citations load FILE --name NAME")
        return
    table = Table("name", "records", "saved", "path")
    for m in metas:
        table.add_row(m["name"], str(m["records"]), m.get("saved_at", ""), m["path"])
    Console(width=200).print(table)


@app.command("check")
def check(
    text_file: Path = typer.Argument(..., help="Text file to check ('-' for stdin)."),
    db: list[str] | None = typer.Option(None, "--db", help="Database(s) to use (default: all)."),
    home: Path | None = typer.Option(None, "--home", help="GREENLIST_HOME override."),
    as_json: bool = typer.Option(False, "--json", help="Print the guardrail details as JSON."),
) -> None:
    """Extract the citations of TEXT_FILE and print a verdict for each. Exit code 1 if any is not_found/mismatch."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from guardrails.base import Direction
    from guardrails.citations import CitationGuardrail, CitationGuardrailConfig

    text = sys.stdin.read() if str(text_file) == "-" else text_file.read_text(encoding="utf-8")
    try:
        guard = CitationGuardrail(CitationGuardrailConfig(databases=db or None, home=str(home) if home else None))
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    result = guard.scan(text, Direction.OUTPUT)
    cits = result.details["citations"]
    if as_json:
        typer.echo(json.dumps({"score": result.score, **result.details}, indent=2, ensure_ascii=False))
    else:
        table = Table("span", "verdict", "citation", "match / nearest")
        for c in cits:
            if c["match"]:
                ref = c["match"]
                info = f"{ref['title']} ({ref.get('year')})"
                if c.get("fields"):
                    info += f"  [wrong: {', '.join(c['fields'])}]"
            elif c.get("nearest"):
                info = "nearest: " + "; ".join(n["title"] for n in c["nearest"][:2])
            else:
                info = ""
            snippet = c["text"] if len(c["text"]) < 90 else c["text"][:87] + "..."
            table.add_row(f"{c['span'][0]}-{c['span'][1]}", c["verdict"], snippet, info)
        Console(width=200).print(table)
        typer.echo(f"{len(cits)} citations; " + ", ".join(f"{k}: {v}" for k, v in result.details["counts"].items()))
    if any(c["verdict"] in ("not_found", "mismatch") for c in cits):
        raise typer.Exit(1)
