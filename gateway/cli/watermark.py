"""``greenlist verify``, ``greenlist verify-certificate`` and ``greenlist watermark-keys``.

``verify`` runs offline against the keys in ``$GREENLIST_HOME`` (no server
needed); ``verify-certificate`` needs neither the server nor the watermark
secret, only the certificate, the text and (optionally) the issuer's public key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

keys_app = typer.Typer(
    help="Watermark keys: list, rotate, retire, add a transformers-compatible key.", no_args_is_help=True
)


def _read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"cannot read {source}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None


def verify(
    file: str = typer.Argument(..., help="Text file to verify, or - for standard input."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
    windowed: bool = typer.Option(False, help="Also search for watermarked passages (WinMax)."),
    certificate: bool = typer.Option(False, help="Include a signed certificate (with --json)."),
) -> None:
    """Verify a text against this installation's watermark keys; exit 0 if watermarked, 1 if not."""
    from gateway.policy.schema import load_policy
    from gateway.settings import Settings
    from gateway.state import build_verifier

    text = _read_text(file)
    if not text.strip():
        typer.echo("the text is empty", err=True)
        raise typer.Exit(2)
    s = Settings()
    verifier = build_verifier(s, load_policy(s.policy).policy.watermark.delta)
    result = verifier.verify(text, windowed=windowed, certificate=certificate)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(
            f"{result['verdict']}: z={result['z_score']:.2f} p={result['p_value']:.3g} "
            f"tokens={result['num_tokens_scored']} key={result['key_id']}"
        )
        for span in result.get("spans", []):
            typer.echo(f"  watermarked span [{span['start']}, {span['end']}) z={span['z_score']:.2f}")
    raise typer.Exit(0 if result["watermarked"] or result.get("spans") else 1)


def verify_certificate(
    cert: Path = typer.Argument(..., help="Certificate JSON (from /v1/watermark/verify with certificate=true)."),
    text_file: str = typer.Argument(..., help="The text the certificate is about, or - for standard input."),
    public_key: list[str] | None = typer.Option(
        None,
        "--public-key",
        help="Trusted base64 Ed25519 public key (repeatable; from GET /v1/watermark/keys). "
        "Without it the key embedded in the certificate is used.",
    ),
) -> None:
    """Check a certificate offline: exit 0 when the signature is valid and the text matches, 1 otherwise."""
    from watermark.certificate import check_certificate

    try:
        data = json.loads(cert.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot read certificate {cert}: {exc}", err=True)
        raise typer.Exit(1) from None
    ok, reason = check_certificate(data, _read_text(text_file), public_key)
    typer.echo(reason, err=not ok)
    raise typer.Exit(0 if ok else 1)


def _home() -> Path:
    """Where the key set lives: the shared one (``GREENLIST_SECRETS_DIR``, a key set file) or ``$GREENLIST_HOME``."""
    from gateway.security.shared_keys import key_set_file
    from gateway.settings import Settings

    settings = Settings()
    return key_set_file(settings) or settings.home


@keys_app.command("list")
def keys_list() -> None:
    """List watermark key ids, kinds and status (never the secrets)."""
    from gateway.security.shared_keys import load_watermark_keys
    from gateway.settings import Settings

    ring = load_watermark_keys(Settings())
    for key in ring.keys:
        mark = "active" if key.key_id == ring.active.key_id else ("retired" if key.retired else "verifying")
        typer.echo(f"{key.key_id}\t{key.kind}\t{mark}\t{key.created}")


@keys_app.command("rotate")
def keys_rotate(
    seeding_scheme: str | None = typer.Option(
        None, help="Record a seeding scheme in the new key (selfhash, lefthash, robust); default: the server setting."
    ),
    activate: bool = typer.Option(
        True,
        help="Make the new key active now; with several replicas add it with "
        "--no-activate, wait one poll interval, then `activate` it.",
    ),
) -> None:
    """Create a new key (active unless --no-activate); older keys keep verifying until retired.

    Running replicas re-read a shared key set (GREENLIST_SECRETS_DIR) within policy_watch_interval_s.
    """
    from watermark.keys import rotate
    from watermark.scheme import SEEDING_SCHEMES

    if seeding_scheme is not None and seeding_scheme not in SEEDING_SCHEMES:
        typer.echo(f"unknown seeding scheme {seeding_scheme!r}; use one of {', '.join(SEEDING_SCHEMES)}", err=True)
        raise typer.Exit(2)
    typer.echo(rotate(_home(), seeding_scheme=seeding_scheme, activate=activate))


@keys_app.command("activate")
def keys_activate(key_id: str) -> None:
    """Make a key (added with `rotate --no-activate`) the one new text is watermarked with."""
    from watermark.keys import activate_key

    try:
        activate_key(_home(), key_id)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@keys_app.command("retire")
def keys_retire(key_id: str) -> None:
    """Stop verifying with a key (not the active one)."""
    from watermark.keys import retire

    try:
        retire(_home(), key_id)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@keys_app.command("add-transformers")
def keys_add_transformers(
    key_id: str,
    hash_key: int = typer.Option(15485863, help="transformers WatermarkingConfig.hashing_key"),
    vocab_size: int = typer.Option(49152, help="the model config's vocab_size"),
    activate: bool = typer.Option(False, help="also generate with this key"),
) -> None:
    """Register a transformers-compatible lefthash key (needs GREENLIST_WATERMARK_SEEDING_SCHEME=lefthash)."""
    from watermark.keys import add_transformers_key

    try:
        add_transformers_key(_home(), key_id, hash_key, vocab_size, activate)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
