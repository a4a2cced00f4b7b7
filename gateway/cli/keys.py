"""``greenlist keys``: create, list and revoke API keys (stored hashed under ``$GREENLIST_HOME``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from gateway.security.keys import KeyStore

keys_app = typer.Typer(help="Manage API keys (Authorization: Bearer).", no_args_is_help=True)


def _store(path: Path | None) -> KeyStore:
    from gateway.security.keys import KeyStore, default_keys_path
    from gateway.settings import Settings

    settings = Settings()
    return KeyStore(path or settings.api_keys_file or default_keys_path(settings.home))


_FILE = typer.Option(
    None, "--file", help="Key store (default: GREENLIST_API_KEYS_FILE or $GREENLIST_HOME/api_keys.json)."
)


@keys_app.command("create")
def keys_create(
    tenant: str = typer.Option(..., help="Tenant the key acts for."),
    scopes: str = typer.Option(
        "generate,moderate,verify", help="Comma-separated scopes: generate, moderate, verify, verify:detail, admin."
    ),
    name: str | None = typer.Option(None, help="Label shown by 'keys list'."),
    file: Path | None = _FILE,
) -> None:
    """Create a key and print its token once (only its SHA-256 is stored)."""
    try:
        token, key = _store(file).create(tenant, [s.strip() for s in scopes.split(",") if s.strip()], name)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)
    typer.echo(
        f"key {key.key_id} for tenant {key.tenant!r}, scopes {','.join(key.scopes)}; the token is shown only now",
        err=True,
    )


@keys_app.command("list")
def keys_list(file: Path | None = _FILE, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List keys (id, tenant, scopes, created, revoked); never tokens or hashes."""
    keys = _store(file).keys()
    rows: list[dict[str, Any]] = [
        {
            "key_id": k.key_id,
            "tenant": k.tenant,
            "scopes": k.scopes,
            "name": k.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(k.created)),
            "revoked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(k.revoked)) if k.revoked else None,
        }
        for k in keys
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = f"revoked {r['revoked']}" if r["revoked"] else "active"
        typer.echo(
            f"{r['key_id']}  {r['tenant']:<16} {','.join(r['scopes']):<40} {r['created']}  {state}"
            + (f"  {r['name']}" if r["name"] else "")
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="Key id (from 'keys list')."), file: Path | None = _FILE
) -> None:
    """Revoke a key; a running server stops accepting it within a second."""
    try:
        key = _store(file).revoke(key_id)
    except KeyError:
        typer.echo(f"error: no key with id {key_id!r}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {key.key_id} (tenant {key.tenant!r})")
