"""Where a replica's watermark keys and certificate signing key come from (docs/deploy.md).

One replica may keep making its own keys under ``$GREENLIST_HOME`` on first start. Several replicas must
share them, or text watermarked through replica A would not verify on replica B and B could not check A's
certificates. The sources, first found wins:

=====================  =========================================================================
watermark keys         ``watermark_key`` (+ ``watermark_key_id``) > ``watermark_key_file`` (a key set
                       JSON, or a file holding one secret) > ``secrets_dir/watermark_keys.json`` >
                       ``$GREENLIST_HOME/watermark_keys.json`` (created; single replica only)
signing key            ``signing_key`` > ``signing_key_file`` > ``secrets_dir/signing_key.pem`` >
                       ``$GREENLIST_HOME/signing_key.pem`` (created; single replica only)
=====================  =========================================================================

In a multi-replica configuration (``redis_url`` set, or ``require_shared_keys``) the last row is refused:
:func:`check_shared_keys` raises :class:`SharedKeysError` saying how to provide the keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway.settings import Settings
from watermark.certificate import SIGNING_KEY_FILE, Signer, load_signer, signer_from_pem
from watermark.keys import KEY_FILE, KeyRing, load_keyring, single_key

HOW_TO = (
    "create them once with `greenlist secrets init DIR` and start every replica with GREENLIST_SECRETS_DIR=DIR "
    "(a mounted secret in a container), or give GREENLIST_WATERMARK_KEY[_FILE] and "
    "GREENLIST_SIGNING_KEY[_FILE]; see docs/deploy.md"
)


class SharedKeysError(RuntimeError):
    """A replica of several has no shared keys configured (the message says how to provide them)."""


def _is_key_set(path: Path) -> bool:
    """True when ``path`` holds a key set JSON (``{"active", "keys"}``) rather than one bare secret."""
    text = path.read_text(encoding="utf-8").strip()
    if not text.startswith("{"):
        return False
    data = json.loads(text)
    return isinstance(data, dict) and "keys" in data


def key_set_file(settings: Settings) -> Path | None:
    """The shared key set file the settings name (rotation edits it; replicas re-read it), or None.

    Raises:
        OSError: when ``watermark_key_file`` cannot be read.
    """
    if settings.watermark_key:
        return None
    if settings.watermark_key_file is not None:
        return settings.watermark_key_file if _is_key_set(settings.watermark_key_file) else None
    if settings.secrets_dir is not None:
        return settings.secrets_dir / KEY_FILE
    return None


def _signing_key_file(settings: Settings) -> Path | None:
    if settings.signing_key_file is not None:
        return settings.signing_key_file
    if settings.secrets_dir is not None:
        return settings.secrets_dir / SIGNING_KEY_FILE
    return None


def check_shared_keys(settings: Settings) -> None:
    """Refuse a multi-replica configuration without shared keys.

    Raises:
        SharedKeysError: when ``settings.multi_replica`` and the watermark keys or the signing key would be
            generated per replica, or a named secrets file is missing.
    """
    if not settings.multi_replica:
        return
    why = " (several replicas: GREENLIST_REDIS_URL or GREENLIST_REQUIRE_SHARED_KEYS is set)"
    if not (settings.watermark_key or settings.watermark_key_file or settings.secrets_dir):
        raise SharedKeysError("no shared watermark keys" + why + "; " + HOW_TO)
    if not (settings.signing_key or settings.signing_key_file or settings.secrets_dir):
        raise SharedKeysError("no shared certificate signing key" + why + "; " + HOW_TO)
    for path in (
        settings.watermark_key_file,
        key_set_file(settings) if not settings.watermark_key else None,
        None if settings.signing_key else _signing_key_file(settings),
    ):
        if path is not None and not Path(path).exists():
            raise SharedKeysError(f"{path} does not exist" + why + "; " + HOW_TO)


def load_watermark_keys(settings: Settings) -> KeyRing:
    """The watermark key ring the settings describe (see the module table).

    Raises:
        SharedKeysError: see :func:`check_shared_keys`.
        FileNotFoundError, ValueError: for a missing or malformed key file, or a too-short secret.
    """
    check_shared_keys(settings)
    if settings.watermark_key:
        return single_key(settings.watermark_key, settings.watermark_key_id)
    if settings.watermark_key_file is not None and not _is_key_set(settings.watermark_key_file):
        return single_key(settings.watermark_key_file.read_text(encoding="utf-8").strip(), settings.watermark_key_id)
    return load_keyring(settings.home, key_file=key_set_file(settings))


def load_certificate_signer(settings: Settings) -> Signer:
    """The Ed25519 certificate signing key the settings describe (see the module table).

    Raises:
        SharedKeysError: see :func:`check_shared_keys`.
        FileNotFoundError, ValueError: for a missing file or a value that is not an Ed25519 private key.
    """
    check_shared_keys(settings)
    if settings.signing_key:
        return signer_from_pem(settings.signing_key.encode(), "GREENLIST_SIGNING_KEY")
    return load_signer(settings.home, _signing_key_file(settings))
