"""``greenlist corpus``: register, list, remove and inspect protected corpora.

Mount in the gateway CLI with ``app.add_typer(corpus_app, name="corpus")``::

    greenlist corpus add books ../shared/data/protected_prose/*.txt --kind prose
    greenlist corpus add stdlib /usr/lib/python3.11/json --kind code
    greenlist corpus list
    greenlist corpus stats books
    greenlist corpus remove books

Corpora live in ``$GREENLIST_HOME/corpora/<name>/``. ``add`` is incremental:
files whose content hash is already indexed are skipped.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from guardrails.protected.index import Corpus, CorpusParams, delete_corpus, list_corpora

app = typer.Typer(help="Manage protected-content corpora (near-duplicate detection).", no_args_is_help=True)
console = Console()


@app.command()
def add(
    name: str = typer.Argument(..., help="Corpus name (letters, digits, '_', '-', '.')."),
    paths: list[str] = typer.Argument(..., help="Files or directories to index."),
    kind: str = typer.Option("prose", "--kind", help="prose | code (fixed when the corpus is created)."),
    backend: str = typer.Option("numpy", help="LSH store for a new corpus: numpy | datasketch."),
    redis_url: str | None = typer.Option(
        None, help="For a new datasketch corpus: share it through Redis, e.g. redis://10.0.0.5:6379/0."
    ),
) -> None:
    """Index PATHS into corpus NAME (created on first use); unchanged files are skipped."""
    if kind not in ("prose", "code"):
        raise typer.BadParameter("--kind must be 'prose' or 'code'")
    if name in list_corpora():
        corpus = Corpus.open(name)
        if corpus.params.kind != kind:
            raise typer.BadParameter(
                f"corpus {name!r} is a {corpus.params.kind} corpus; use --kind {corpus.params.kind} or another name"
            )
    else:
        storage = None
        if redis_url:
            from urllib.parse import urlparse

            u = urlparse(redis_url)
            backend = "datasketch"
            storage = {
                "type": "redis",
                "basename": f"greenlist:corpus:{name}",
                "redis": {
                    "host": u.hostname or "127.0.0.1",
                    "port": u.port or 6379,
                    "db": int((u.path or "/0").strip("/") or 0),
                },
            }
        corpus = Corpus.create(
            name,
            CorpusParams.default(kind),
            backend=backend,  # type: ignore[arg-type]
            storage_config=storage,
        )
    try:
        files = corpus.expand_paths(paths)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    total = sum(p.stat().st_size for p, _ in files)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"indexing {len(files)} file(s)", total=max(total, 1))
        report = corpus.add_texts(
            ((str(p), p.read_text("utf-8", errors="replace"), lang) for p, lang in files),
            progress=lambda n: bar.advance(task, n),
        )
    console.print(
        f"{name}: added {len(report.added)}, replaced {len(report.replaced)}, "
        f"unchanged {len(report.skipped)} file(s); {report.passages} new passages"
    )


@app.command("list")
def list_cmd() -> None:
    """List registered corpora with their kind, documents and passages."""
    table = Table("name", "kind", "backend", "documents", "passages")
    for name in list_corpora():
        s = Corpus.open(name).stats()
        table.add_row(name, s["kind"], s["backend"], str(s["documents"]), str(s["passages"]))
    console.print(table)


@app.command()
def remove(
    name: str = typer.Argument(..., help="Corpus to delete."),
    document: str | None = typer.Option(None, "--document", help="Remove only this document (its path)."),
) -> None:
    """Delete corpus NAME, or only one document of it with --document."""
    if document is not None:
        corpus = Corpus.open(name)
        if not corpus.remove_document(document):
            console.print(f"no document {document!r} in corpus {name!r}")
            raise typer.Exit(1)
        console.print(f"removed {document} from {name}")
        return
    if not delete_corpus(name):
        console.print(f"no corpus {name!r}; see `greenlist corpus list`")
        raise typer.Exit(1)
    console.print(f"removed corpus {name}")


@app.command()
def stats(
    name: str | None = typer.Argument(None, help="Corpus (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Documents, passages, tokens, disk size and parameters of a corpus."""
    names = [name] if name else list_corpora()
    out = []
    for n in names:
        try:
            out.append(Corpus.open(n).stats())
        except FileNotFoundError as exc:
            console.print(str(exc))
            raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    for s in out:
        console.print(
            f"[bold]{s['name']}[/bold] ({s['kind']}, {s['backend']}): {s['documents']} documents, "
            f"{s['passages']} passages, {s['tokens']} tokens, {s['chars']} chars, "
            f"{s['disk_bytes'] / 2**20:.1f} MiB on disk; params {s['params']}"
        )
