"""Watermark keys: where the secret comes from (never from code), key ids and rotation.

Order of precedence:

1. ``GREENLIST_WATERMARK_KEY`` (the secret, any string of 16+ characters) with
   ``GREENLIST_WATERMARK_KEY_ID`` (its public id, default ``"env"``);
2. the key file ``$GREENLIST_HOME/watermark_keys.json`` (mode 0600), created on
   first start with one random 256-bit key so that restarts keep verifying
   earlier text.

The file holds ``{"active": ID, "keys": {ID: {...}}}``. A key is of kind
``keyed`` (``"secret": HEX``; Greenlist's fast keyed-hash green lists) or
``transformers-lefthash`` (``"hash_key": INT, "vocab_size": INT``; the green
lists of transformers' ``WatermarkLogitsProcessor``, for interoperability).
Generation uses the active key; verification tries every key not ``retired``.
Rotation (:func:`rotate`) adds a fresh key and makes it active, keeping the old
ones verifiable until retired (:func:`retire`).

**Key ids record the seeding scheme.** Keys made by Greenlist get ids
``wm-{scheme}-{YYYYMMDD}-{6 hex}`` (e.g. ``wm-robust-20261203-a1b2c3``) and the
entry field ``"seeding_scheme"``; verification then scores each key with the
detector of its own scheme, so keys of different schemes can be verified side
by side after a rotation from ``selfhash`` to ``robust``. Ids made before
(``wm-{YYYYMMDD}-{hex}``) and operator-chosen ids record no scheme and stay
valid: they use the server's ``GREENLIST_WATERMARK_SEEDING_SCHEME``, as before.
An operator id may record one too by starting with ``wm-{scheme}-``.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watermark.compat import TransformersLefthashScheme
from watermark.scheme import SEEDING_SCHEMES, GreenListScheme, Scheme

KEY_FILE = "watermark_keys.json"
KINDS = ("keyed", "transformers-lefthash")


@dataclass(frozen=True)
class WatermarkKey:
    """One watermark key.

    Attributes:
        key_id: Public identifier.
        kind: ``keyed`` or ``transformers-lefthash``.
        secret: The secret of a ``keyed`` key (never logged or returned).
        hash_key: transformers' ``hashing_key`` for ``transformers-lefthash``.
        vocab_size: Vocabulary size transformers permutes (``transformers-lefthash``).
        retired: A retired key is no longer tried by verification.
        created: ISO timestamp.
        seeding_scheme: The seeding scheme the key is bound to (``lefthash``,
            ``selfhash`` or ``robust``), or None for a key that records none
            (it follows the server setting). Defaults to the scheme the key id
            records (:func:`scheme_of_key_id`).
    """

    key_id: str
    secret: bytes | None = field(default=None, repr=False)
    kind: str = "keyed"
    hash_key: int | None = None
    vocab_size: int | None = None
    retired: bool = False
    created: str = ""
    seeding_scheme: str | None = None

    def __post_init__(self) -> None:
        if self.seeding_scheme is None and self.kind == "keyed":
            object.__setattr__(self, "seeding_scheme", scheme_of_key_id(self.key_id))
        if self.seeding_scheme is not None and self.seeding_scheme not in SEEDING_SCHEMES:
            raise ValueError(f"key {self.key_id!r}: unknown seeding scheme {self.seeding_scheme!r}; "
                             f"use one of {SEEDING_SCHEMES}")

    def scheme(self, gamma: float, seeding_scheme: str) -> Scheme:
        """The green-list scheme of this key.

        Args:
            gamma: γ, the green-list fraction (server setting).
            seeding_scheme: The server's seeding scheme; used only when the key
                records none (a key bound to a scheme always uses its own).

        Returns:
            A :class:`~watermark.scheme.GreenListScheme`, or a
            :class:`~watermark.compat.TransformersLefthashScheme` for keys of that kind.

        Raises:
            ValueError: for an unknown seeding scheme or an invalid γ.
        """
        if self.kind == "transformers-lefthash":
            return TransformersLefthashScheme(self.key_id, int(self.hash_key or 0), int(self.vocab_size or 0), gamma)
        chosen = self.seeding_scheme or seeding_scheme
        return GreenListScheme(self.secret or b"", self.key_id, gamma, chosen)  # type: ignore[arg-type]  # checked in __post_init__

    def public(self) -> dict[str, Any]:
        """What may be published about the key (no secret)."""
        return {"key_id": self.key_id, "kind": self.kind, "retired": self.retired, "created": self.created,
                "seeding_scheme": self.seeding_scheme}


def scheme_of_key_id(key_id: str) -> str | None:
    """The seeding scheme a key id records (``wm-{scheme}-...``), or None for an id that records none.

    Examples:
        >>> scheme_of_key_id("wm-robust-20261203-a1b2c3"), scheme_of_key_id("wm-20261203-a1b2c3")
        ('robust', None)
    """
    parts = key_id.split("-", 2)
    if len(parts) == 3 and parts[0] == "wm" and parts[1] in SEEDING_SCHEMES:
        return parts[1]
    return None


@dataclass(frozen=True)
class KeyRing:
    """The configured keys and the one generation uses (``active``)."""

    active: WatermarkKey
    keys: tuple[WatermarkKey, ...]

    @property
    def verifying(self) -> tuple[WatermarkKey, ...]:
        """Keys verification tries: every key not retired."""
        return tuple(k for k in self.keys if not k.retired)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _new_keyed_entry(seeding_scheme: str | None = None) -> tuple[str, dict[str, Any]]:
    """A fresh random keyed entry; with a scheme, its id and entry record it (``wm-{scheme}-{date}-{hex}``)."""
    date = datetime.now(UTC).strftime("%Y%m%d")
    entry: dict[str, Any] = {"kind": "keyed", "secret": secrets.token_hex(32), "created": _now(), "retired": False}
    if seeding_scheme is None:
        return f"wm-{date}-{secrets.token_hex(3)}", entry
    if seeding_scheme not in SEEDING_SCHEMES:
        raise ValueError(f"unknown seeding scheme {seeding_scheme!r}; use one of {SEEDING_SCHEMES}")
    return f"wm-{seeding_scheme}-{date}-{secrets.token_hex(3)}", {**entry, "seeding_scheme": seeding_scheme}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write the key file atomically with mode 0600."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def _read(home: Path) -> dict[str, Any]:
    path = home / KEY_FILE
    if not path.exists():
        key_id, entry = _new_keyed_entry()
        _write(path, {"active": key_id, "keys": {key_id: entry}})
    return json.loads(path.read_text())


def _parse(key_id: str, entry: dict[str, Any], path: Path) -> WatermarkKey:
    kind = entry.get("kind", "keyed")
    if kind not in KINDS:
        raise ValueError(f"{path}: key {key_id!r} has unknown kind {kind!r}; use one of {KINDS}")
    if kind == "keyed" and not entry.get("secret"):
        raise ValueError(f"{path}: keyed key {key_id!r} needs a 'secret' (64 hex digits)")
    return WatermarkKey(
        key_id=key_id,
        secret=bytes.fromhex(entry["secret"]) if entry.get("secret") else None,
        kind=kind,
        hash_key=entry.get("hash_key"),
        vocab_size=entry.get("vocab_size"),
        retired=bool(entry.get("retired", False)),
        created=entry.get("created", ""),
        seeding_scheme=entry.get("seeding_scheme"),
    )


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
    _read(home)  # creates the file with one random key on first start
    return read_key_file(home / KEY_FILE)


def read_key_file(path: Path) -> KeyRing:
    """Load a key file (``{"active": ID, "keys": {ID: {...}}}``, see module docstring) without creating it.

    This is how a server that only generates (the vLLM plugin, ``GREENLIST_WATERMARK_KEY_FILE``) reads a key
    file copied from the Greenlist host.

    Args:
        path: The JSON key file.

    Returns:
        The key ring.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: for a malformed file or an ``active`` id that is missing or retired.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise ValueError(f"{path}: expected {{'active': ID, 'keys': {{ID: {{...}}}}}}")
    keys = tuple(_parse(key_id, entry, Path(path)) for key_id, entry in data["keys"].items())
    active = next((k for k in keys if k.key_id == data.get("active") and not k.retired), None)
    if active is None:
        raise ValueError(f"{path}: 'active' must name a key in 'keys' that is not retired")
    return KeyRing(active=active, keys=keys)


def rotate(home: Path, seeding_scheme: str | None = None) -> str:
    """Add a fresh random ``keyed`` key and make it active; return its id. Old keys stay verifiable.

    Args:
        home: The Greenlist data directory.
        seeding_scheme: Bind the new key to this scheme (its id and entry record
            it, e.g. ``wm-robust-20261203-a1b2c3``); None keeps the old
            behaviour (the key follows the server's seeding scheme).

    Raises:
        ValueError: for an unknown seeding scheme.
    """
    data = _read(home)
    key_id, entry = _new_keyed_entry(seeding_scheme)
    data["keys"][key_id] = entry
    data["active"] = key_id
    _write(home / KEY_FILE, data)
    return key_id


def retire(home: Path, key_id: str) -> None:
    """Stop verifying with ``key_id``.

    Raises:
        ValueError: for an unknown key, or the active key (rotate first).
    """
    data = _read(home)
    if key_id not in data["keys"]:
        raise ValueError(f"no watermark key {key_id!r}; see `greenlist watermark-keys list`")
    if key_id == data["active"]:
        raise ValueError(f"{key_id!r} is the active key; run `greenlist watermark-keys rotate` first")
    data["keys"][key_id]["retired"] = True
    _write(home / KEY_FILE, data)


def add_transformers_key(home: Path, key_id: str, hash_key: int, vocab_size: int, activate: bool = False) -> None:
    """Register a transformers-compatible ``lefthash`` key (interoperability with ``WatermarkingConfig``).

    Raises:
        ValueError: when ``key_id`` exists already.
    """
    data = _read(home)
    if key_id in data["keys"]:
        raise ValueError(f"watermark key {key_id!r} exists already")
    data["keys"][key_id] = {"kind": "transformers-lefthash", "hash_key": int(hash_key), "vocab_size": int(vocab_size),
                            "created": _now(), "retired": False}
    if activate:
        data["active"] = key_id
    _write(home / KEY_FILE, data)
