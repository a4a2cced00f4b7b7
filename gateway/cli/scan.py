"""``greenlist scan``: run a whole dataset through verify, moderate or guardrails (in-process or on Ray)."""

from __future__ import annotations

from pathlib import Path

import typer


def scan(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Dataset: .jsonl, .csv or .parquet."),
    task: str = typer.Option(..., "--task", help="verify | moderate | guardrails (the HTTP endpoint it agrees with)."),
    output: Path = typer.Option(..., "--output", "-o", help="Result .parquet file; rerunning resumes it."),
    policy: Path | None = typer.Option(None, "--policy", help="Policy file (default: GREENLIST_POLICY)."),
    text_column: str = typer.Option("text", "--text-column", help="Column (JSON field) holding the text."),
    id_column: str | None = typer.Option(None, "--id-column", help="Column of unique row ids (default: row number)."),
    direction: str = typer.Option("output", help="guardrails: check texts as input or output."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Rows per batch (unit of writing and of Ray)."),
    ray: bool = typer.Option(False, "--ray", help="Run on Ray (local Ray unless --ray-address)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (implies --ray)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Ray workers, one model copy each."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Scan every row of INPUT not yet in OUTPUT; exit 0 when done, 2 on bad input.

    `greenlist scan data.jsonl --task verify -o out.parquet` (add `--ray` or `--ray-address ray://host:10001`).
    """
    from gateway.policy.schema import PolicyError
    from gateway.scan import ScanInputError, TaskSpec
    from gateway.scan import scan as run_scan

    try:
        spec = TaskSpec(task, policy, direction)
        summary = run_scan(
            input_path,
            output,
            spec,
            text_column=text_column,
            id_column=id_column,
            batch_size=batch_size,
            ray=ray or ray_address is not None,
            ray_address=ray_address,
            workers=workers,
            progress=progress,
        )
    except PolicyError as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None
    except (ScanInputError, ValueError, RuntimeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rate = summary.rows_scanned / summary.seconds if summary.seconds > 0 else 0.0
    typer.echo(
        f"{summary.output}: {summary.rows_written} rows ({summary.rows_scanned} scanned now, "
        f"{summary.rows_skipped} already done, {summary.errors} errors) in {summary.seconds:.1f} s "
        f"({rate:.1f} rows/s)"
    )
