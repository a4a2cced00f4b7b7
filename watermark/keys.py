"""Watermark keys: where the secret comes from, never from code.

Order of precedence:

1. ``GREENLIST_WATERMARK_KEY`` (the secret, any string of 16+ characters) with
   ``GREENLIST_WATERMARK_KEY_ID`` (its public id, default ``"env"``);
2. the key file ``$GREENLIST_HOME/watermark_keys.json`` (mode 0600), created on
   first start with one random 256-bit key so that restarts keep verifying
   earlier text.

The file holds ``{"active": ID, "keys": {ID: {"secret": HEX, "created": ISO,
"retired": false}}}``; several keys prepare for rotation.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

KEY_FILE = "watermark_keys.json"


@dataclass(frozen=True)
class WatermarkKey:
    """One watermark secret with its public id."""

    key_id: str
    secret: bytes = field(repr=False)
    retired: bool = False


@dataclass(frozen=True)
class KeyRing:
    """The configured keys and the one generation uses (``active``)."""

    active: WatermarkKey
    keys: tuple[WatermarkKey, ...]


def _new_key_file(path: Path) -> None:
    key_id = "wm-" + datetime.now(timezone.utc).strftime("%Y%m%d") + "-" + secrets.token_hex(3)
    data = {
        "active": key_id,
        "keys": {key_id: {"secret": secrets.token_hex(32),
                          "created": datetime.now(timezone.utc).isoformat(), "retired": False}},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)


def load_keyring(home: Path) -> KeyRing:
    """Load the watermark keys (see module docstring), creating the key file if needed.

    Args:
        home: The Greenlist data directory.

    Returns:
        The key ring; ``active`` is the key used for generation.

    Raises:
        ValueError: for a too-short env key, or a key file whose ``active`` id is
            missing or retired (fix the file or set ``GREENLIST_WATERMARK_KEY``).
    """
    env_secret = os.environ.get("GREENLIST_WATERMARK_KEY")
    if env_secret:
        if len(env_secret) < 16:
            raise ValueError("GREENLIST_WATERMARK_KEY must be at least 16 characters; use a random 64-hex-digit string")
        key = WatermarkKey(os.environ.get("GREENLIST_WATERMARK_KEY_ID", "env"), env_secret.encode())
        return KeyRing(active=key, keys=(key,))
    path = home / KEY_FILE
    if not path.exists():
        _new_key_file(path)
    data = json.loads(path.read_text())
    keys = tuple(
        WatermarkKey(key_id, bytes.fromhex(entry["secret"]), bool(entry.get("retired", False)))
        for key_id, entry in data["keys"].items()
    )
    active = next((k for k in keys if k.key_id == data.get("active") and not k.retired), None)
    if active is None:
        raise ValueError(f"{path}: 'active' must name a key in 'keys' that is not retired")
    return KeyRing(active=active, keys=keys)
