"""``greenlist secrets init DIR`` and ``greenlist keys export-public``: keys shared by every replica.

``secrets init`` writes a secrets directory (mode 0700) holding the watermark key set
(``watermark_keys.json``) and the Ed25519 certificate signing key (``signing_key.pem``), both mode 0600.
Start every replica with ``GREENLIST_SECRETS_DIR=DIR`` (in a container: a mounted secret); see
docs/deploy.md. ``keys export-public`` prints what a third party needs to check certificates offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

secrets_app = typer.Typer(
    help="Keys shared by every replica: watermark key set and certificate signing key.", no_args_is_help=True
)


@secrets_app.command("init")
def secrets_init(
    directory: Path = typer.Argument(..., help="Secrets directory to create (mode 0700)."),
    seeding_scheme: str | None = typer.Option(
        None, help="Record a seeding scheme in the first key (selfhash, lefthash, robust); default: the server's."
    ),
) -> None:
    """Create DIR with a new watermark key set and signing key; refuse to overwrite existing keys (exit 1)."""
    from watermark.certificate import SIGNING_KEY_FILE, create_signing_key
    from watermark.keys import KEY_FILE, create_key_file
    from watermark.scheme import SEEDING_SCHEMES

    if seeding_scheme is not None and seeding_scheme not in SEEDING_SCHEMES:
        typer.echo(f"unknown seeding scheme {seeding_scheme!r}; use one of {', '.join(SEEDING_SCHEMES)}", err=True)
        raise typer.Exit(2)
    existing = [p for p in (directory / KEY_FILE, directory / SIGNING_KEY_FILE) if p.exists()]
    if existing:
        typer.echo(
            f"{', '.join(map(str, existing))} exists already; keys are never overwritten "
            "(rotate with `greenlist watermark-keys rotate`)",
            err=True,
        )
        raise typer.Exit(1)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key_id = create_key_file(directory / KEY_FILE, seeding_scheme)
    signer = create_signing_key(directory / SIGNING_KEY_FILE)
    typer.echo(f"watermark key {key_id} and signing key {signer.key_id} written to {directory}")
    typer.echo(f"start every replica with GREENLIST_SECRETS_DIR={directory.resolve()}", err=True)


def export_public(
    fmt: str = typer.Option(
        "json",
        "--format",
        help="json (everything public) or b64 (the Ed25519 public key only, "
        "for `greenlist verify-certificate --public-key`).",
    ),
) -> None:
    """Print what a third party needs to check certificates: the Ed25519 public key and the watermark key ids."""
    from gateway.security.shared_keys import SharedKeysError, load_certificate_signer, load_watermark_keys
    from gateway.settings import Settings

    settings = Settings()
    try:
        signer = load_certificate_signer(settings)
        ring = load_watermark_keys(settings)
    except (SharedKeysError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if fmt == "b64":
        typer.echo(signer.public()["public_key"])
        return
    typer.echo(
        json.dumps(
            {
                "signing_keys": [signer.public()],
                "watermark_keys": [k.public() for k in ring.keys],
                "active_watermark_key": ring.active.key_id,
            },
            indent=2,
        )
    )
