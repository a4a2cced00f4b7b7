"""The ``greenlist`` command line: serve the gateway and manage what it uses."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from gateway import cli_watermark
from guardrails.citations.cli import app as citations_app
from guardrails.protected.cli import app as corpus_app
from guardrails.toxicity.training.cli import app as toxicity_app

app = typer.Typer(help="Greenlist: guardrail and watermarking gateway for LLMs.", no_args_is_help=True,
                  add_completion=False)
policy_app = typer.Typer(help="Validate and inspect policy files.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
from gateway.keys_cli import keys_app  # noqa: E402 - greenlist keys create/list/revoke

app.add_typer(keys_app, name="keys")
app.add_typer(corpus_app, name="corpus")
app.add_typer(citations_app, name="citations")
app.add_typer(cli_watermark.keys_app, name="watermark-keys")
app.command("verify")(cli_watermark.verify)
app.command("verify-certificate")(cli_watermark.verify_certificate)
app.registered_commands.extend(toxicity_app.registered_commands)  # train-toxicity, audit-fairness, calibrate, compare-models


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default 8000)."),
    policy: Optional[Path] = typer.Option(None, help="Policy file (default policies/default.yaml)."),
    config: Optional[Path] = typer.Option(None, help="YAML config file (also GREENLIST_CONFIG)."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Start the gateway; it reports ready once the model is loaded and warmed up."""
    import uvicorn

    from gateway.app import create_app
    from gateway.policy import PolicyError, load_policy
    from gateway.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config is not None:
        os.environ["GREENLIST_CONFIG"] = str(config)
    overrides = {k: v for k, v in {"host": host, "port": port, "policy": policy}.items() if v is not None}
    settings = Settings(**overrides)
    try:
        load_policy(settings.policy)  # refuse to start on an invalid policy, naming file, line and field
        from gateway.policy_store import PolicyStore

        PolicyStore(settings.policies_dir or settings.policy.parent, settings.policy,  # ... or policy set / routing
                    settings.policy_routing).validate()
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)


@policy_app.command("check")
def policy_check(files: list[Path] = typer.Argument(..., help="Policy files, or a policies/ folder (+ routing.yaml).")) -> None:
    """Validate policy files (following ``extends``); print every error with file, line and field; exit 1 if any is invalid."""
    from gateway.policy import PolicyError, load_policy
    from gateway.policy_store import PolicyStore

    failed = False
    for path in files:
        try:
            if path.is_dir():
                loaded_all, _, default = PolicyStore(path).validate()
                typer.echo(f"{path}: ok ({len(loaded_all)} policies, default {default!r}, routing valid)")
                continue
            loaded = load_policy(path)
            based = f", extends {' <- '.join(str(b) for b in loaded.bases)}" if loaded.bases else ""
            typer.echo(f"{path}: ok (policy {loaded.policy.name!r}, version {loaded.version}{based})")
        except PolicyError as exc:
            failed = True
            for issue in exc.issues:
                typer.echo(str(issue), err=True)
    raise typer.Exit(1 if failed else 0)


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of policy files (for editor validation)."""
    import json

    from gateway.policy import policy_json_schema

    typer.echo(json.dumps(policy_json_schema(), indent=2))


from gateway.trust_cli import audit_app, policy_diff  # noqa: E402 - greenlist policy diff, greenlist audit query

policy_app.command("diff")(policy_diff)
app.add_typer(audit_app, name="audit")


if __name__ == "__main__":
    app()
