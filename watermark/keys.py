"""Watermark keys: where the secret comes from (never from code), key ids and rotation.

Order of precedence (the gateway's settings pass these in; this module reads no environment):

1. a single secret (``GREENLIST_WATERMARK_KEY``, any string of 16+ characters) with
   its public id (``GREENLIST_WATERMARK_KEY_ID``; default derived from the secret,
   ``wm-env-{12 hex}``, so every replica given the same secret reports the same id);
2. a key file named explicitly (``GREENLIST_WATERMARK_KEY_FILE``, or
   ``$GREENLIST_SECRETS_DIR/watermark_keys.json`` made by ``greenlist secrets init``),
   never created: a shared key set is made once, by the operator;
3. the key file ``$GREENLIST_HOME/watermark_keys.json`` (mode 0600), created on
   first start with one random 256-bit key so that restarts keep verifying
   earlier text (one replica only).

The file holds ``{"active": ID, "keys": {ID: {...}}}``. A key is of kind
``keyed`` (``"secret": HEX``; Greenlist's fast keyed-hash green lists) or
``transformers-lefthash`` (``"hash_key": INT, "vocab_size": INT``; the green
lists of transformers' ``WatermarkLogitsProcessor``, for interoperability).
Generation uses the active key; verification tries every key not ``retired``.
Rotation (:func:`rotate`) adds a fresh key and makes it active, keeping the old
ones verifiable until retired (:func:`retire`).

**Key ids are derived from the key material**: the 6 hex digits are the start of
SHA-256 over ``greenlist-key-id:`` + the secret (:func:`derived_suffix`), so a key id
names its secret and cannot collide with another replica's key by chance.

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

import hashlib
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

XARG_KEY_ID = "greenlist_watermark_key_id"
"""The one per-request argument of the vLLM plugin (``vllm_xargs`` / ``SamplingParams.extra_args``): the id of
the key to watermark with; the key itself never travels with a request (:mod:`watermark.vllm_plugin`)."""


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
            raise ValueError(
                f"key {self.key_id!r}: unknown seeding scheme {self.seeding_scheme!r}; use one of {SEEDING_SCHEMES}"
            )

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
        return {
            "key_id": self.key_id,
            "kind": self.kind,
            "retired": self.retired,
            "created": self.created,
            "seeding_scheme": self.seeding_scheme,
        }


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


def derived_suffix(secret: bytes, digits: int = 6) -> str:
    """The hex digits a key id takes from its secret: SHA-256 of ``b"greenlist-key-id:" + secret``.

    Args:
        secret: The key's secret bytes.
        digits: How many hex digits (6 in file key ids, 12 for a key given as a single value).

    Returns:
        Lower-case hex, the same on every machine for the same secret.
    """
    return hashlib.sha256(b"greenlist-key-id:" + secret).hexdigest()[:digits]


def _new_keyed_entry(seeding_scheme: str | None = None, secret: bytes | None = None) -> tuple[str, dict[str, Any]]:
    """A keyed entry for ``secret`` (None: 32 fresh random bytes); the id's hex is derived from the secret
    (:func:`derived_suffix`).

    With a scheme, its id and entry record it (``wm-{scheme}-{date}-{hex}``).
    """
    date = datetime.now(UTC).strftime("%Y%m%d")
    secret = secrets.token_bytes(32) if secret is None else secret
    entry: dict[str, Any] = {"kind": "keyed", "secret": secret.hex(), "created": _now(), "retired": False}
    if seeding_scheme is None:
        return f"wm-{date}-{derived_suffix(secret)}", entry
    if seeding_scheme not in SEEDING_SCHEMES:
        raise ValueError(f"unknown seeding scheme {seeding_scheme!r}; use one of {SEEDING_SCHEMES}")
    return f"wm-{seeding_scheme}-{date}-{derived_suffix(secret)}", {**entry, "seeding_scheme": seeding_scheme}


def create_key_file(path: Path, seeding_scheme: str | None = None, secret: bytes | None = None) -> str:
    """Write a new key file with one key at ``path`` (mode 0600); refuse to overwrite one.

    Args:
        path: The key file to create (its folder must exist).
        seeding_scheme: Record this scheme in the key (see :func:`rotate`).
        secret: The key's secret, at least 16 bytes; None (the default, and what a deployment wants) draws
            32 random bytes. A fixed secret makes watermarked generation reproducible (tests).

    Returns:
        The new key's id.

    Raises:
        FileExistsError: when ``path`` exists (a shared key set is never replaced by accident).
        ValueError: for an unknown seeding scheme, or a secret shorter than 16 bytes.
    """
    if Path(path).exists():
        raise FileExistsError(f"{path} exists already; rotate keys with `greenlist watermark-keys rotate`")
    if secret is not None and len(secret) < 16:
        raise ValueError("a watermark key secret needs at least 16 bytes; use secrets.token_bytes(32)")
    key_id, entry = _new_keyed_entry(seeding_scheme, secret)
    _write(Path(path), {"active": key_id, "keys": {key_id: entry}})
    return key_id


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write the key file atomically with mode 0600."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def _key_path(location: Path) -> Path:
    """The key file of ``location``: itself when it names a ``.json`` file, else ``location/watermark_keys.json``."""
    location = Path(location)
    return location if location.suffix == ".json" else location / KEY_FILE


def _read(location: Path, create: bool = True) -> dict[str, Any]:
    path = _key_path(location)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no watermark key file at {path}; create one with `greenlist secrets init DIR`")
        key_id, entry = _new_keyed_entry()
        _write(path, {"active": key_id, "keys": {key_id: entry}})
    data: dict[str, Any] = json.loads(path.read_text())
    return data


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


def single_key(secret: str, key_id: str | None = None) -> KeyRing:
    """A key ring of one keyed secret given as a value (``GREENLIST_WATERMARK_KEY``).

    Args:
        secret: The secret, 16+ characters.
        key_id: Its public id; None derives ``wm-env-{12 hex}`` from the secret (:func:`derived_suffix`).

    Raises:
        ValueError: for a secret shorter than 16 characters.
    """
    if len(secret) < 16:
        raise ValueError("GREENLIST_WATERMARK_KEY must be at least 16 characters; use a random 64-hex-digit string")
    key = WatermarkKey(key_id or f"wm-env-{derived_suffix(secret.encode(), 12)}", secret.encode())
    return KeyRing(active=key, keys=(key,))


def load_keyring(
    home: Path, *, secret: str | None = None, key_id: str | None = None, key_file: Path | None = None
) -> KeyRing:
    """Load the watermark keys (see module docstring).

    Args:
        home: The Greenlist data directory (its key file is created on first use when nothing else is given).
        secret: A single secret (``GREENLIST_WATERMARK_KEY``); wins over any file.
        key_id: The single secret's public id (``GREENLIST_WATERMARK_KEY_ID``).
        key_file: A key file that must exist (a shared key set; never created here).

    Returns:
        The key ring; ``active`` is the key used for generation.

    Raises:
        FileNotFoundError: when ``key_file`` does not exist.
        ValueError: for a too-short secret, or a key file whose ``active`` id is
            missing or retired (fix the file or give a secret).
    """
    if secret:
        return single_key(secret, key_id)
    if key_file is not None:
        return read_key_file(key_file)
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


def rotate(home: Path, seeding_scheme: str | None = None, activate: bool = True) -> str:
    """Add a fresh random ``keyed`` key and (by default) make it active; return its id. Old keys stay verifiable.

    On a key set shared by several replicas, add with ``activate=False`` first, wait until every replica
    verifies with the new key (they re-read the file within ``policy_watch_interval_s``), then
    :func:`activate_key` it: no replica is ever asked to verify text made with a key it has not loaded.

    Args:
        home: The Greenlist data directory, a secrets directory, or a key file (``.json``).
        seeding_scheme: Bind the new key to this scheme (its id and entry record
            it, e.g. ``wm-robust-20261203-a1b2c3``); None keeps the old
            behaviour (the key follows the server's seeding scheme).
        activate: Make the new key the one generation uses.

    Raises:
        ValueError: for an unknown seeding scheme.
    """
    data = _read(home)
    key_id, entry = _new_keyed_entry(seeding_scheme)
    data["keys"][key_id] = entry
    if activate:
        data["active"] = key_id
    _write(_key_path(home), data)
    return key_id


def activate_key(home: Path, key_id: str) -> None:
    """Make ``key_id`` the key generation uses (it must exist and not be retired).

    Raises:
        ValueError: for an unknown or retired key.
    """
    data = _read(home, create=False)
    entry = data["keys"].get(key_id)
    if entry is None or entry.get("retired"):
        raise ValueError(
            f"no usable watermark key {key_id!r} (unknown or retired); see `greenlist watermark-keys list`"
        )
    data["active"] = key_id
    _write(_key_path(home), data)


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
    _write(_key_path(home), data)


def add_transformers_key(home: Path, key_id: str, hash_key: int, vocab_size: int, activate: bool = False) -> None:
    """Register a transformers-compatible ``lefthash`` key (interoperability with ``WatermarkingConfig``).

    Raises:
        ValueError: when ``key_id`` exists already.
    """
    data = _read(home)
    if key_id in data["keys"]:
        raise ValueError(f"watermark key {key_id!r} exists already")
    data["keys"][key_id] = {
        "kind": "transformers-lefthash",
        "hash_key": int(hash_key),
        "vocab_size": int(vocab_size),
        "created": _now(),
        "retired": False,
    }
    if activate:
        data["active"] = key_id
    _write(_key_path(home), data)
