"""``greenlist serve``: start the gateway."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import typer


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    policy: Path | None = typer.Option(None, help="Policy file (default policies/default.yaml)."),
    config: Path | None = typer.Option(None, help="YAML config file (also GREENLIST_CONFIG)."),
    backend: str | None = typer.Option(
        None, help="local (embedded model) or openai (an upstream: --upstream-base-url or GREENLIST_UPSTREAM_BASE_URL)."
    ),
    upstream_base_url: str | None = typer.Option(None, help="The openai backend's upstream, http://host:port/v1."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Start the gateway; it reports ready once the model is loaded and warmed up."""
    import uvicorn

    from gateway.api.app import create_app
    from gateway.policy.schema import PolicyError, load_policy
    from gateway.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config is not None:
        os.environ["GREENLIST_CONFIG"] = str(config)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "policy": policy,
            "backend": backend,
            "upstream_base_url": upstream_base_url,
        }.items()
        if v is not None
    }
    settings = Settings(**overrides)
    try:
        load_policy(settings.policy)  # refuse to start on an invalid policy, naming file, line and field
        from gateway.policy.store import PolicyStore

        PolicyStore(
            settings.policies_dir or settings.policy.parent,
            settings.policy,  # ... or policy set / routing
            settings.policy_routing,
        ).validate()
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from gateway.security.shared_keys import SharedKeysError, check_shared_keys

    try:
        check_shared_keys(settings)  # one replica of several never makes keys of its own
    except SharedKeysError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # loop / http "auto": uvloop and httptools (dependencies) where installed, else asyncio and h11
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)
