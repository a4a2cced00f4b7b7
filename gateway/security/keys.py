"""API keys: created once, stored hashed, looked up in constant time.

``greenlist keys create --tenant T --scopes generate,moderate`` prints a token ``gl_<key id>_<secret>``
once. The store (``$GREENLIST_HOME/api_keys.json``, mode 0600, or ``GREENLIST_API_KEYS_FILE``) keeps only
the SHA-256 of each token, the tenant, the scopes and whether the key is revoked. The secret has 256 bits
of entropy, so an unsalted fast hash is adequate (there is nothing to brute-force, unlike a password).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from greenlist.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("greenlist.auth")

SCOPES: tuple[str, ...] = ("generate", "moderate", "verify", "verify:detail", "admin")
ALL_SCOPES: frozenset[str] = frozenset(SCOPES)
TOKEN_PREFIX = "gl_"


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (what the store keeps)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ApiKey:
    """One stored key (never the token itself).

    Attributes:
        key_id: Public id, also embedded in the token.
        tenant: Tenant the key acts for.
        scopes: Granted scopes.
        sha256: Hex SHA-256 of the whole token.
        created: Unix time of creation.
        revoked: Unix time of revocation, or None while active.
        name: Optional label.
    """

    key_id: str
    tenant: str
    scopes: list[str]
    sha256: str
    created: float
    revoked: float | None = None
    name: str | None = None

    @property
    def active(self) -> bool:
        """True until revoked."""
        return self.revoked is None


class KeyStore:
    """API keys in a JSON file (hashed), re-read when the file changes.

    Args:
        path: The JSON file (created on the first :meth:`create`, mode 0600).
        clock: Time source for re-read intervals and key timestamps.
    """

    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path, self.clock = Path(path), clock
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    # --- persistence -----------------------------------------------------------
    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text("utf-8") or "{}")
            keys = {k["key_id"]: ApiKey(**k) for k in data.get("keys", [])}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            # A broken store must not open the gate: keep the last good keys, say so.
            log.error(
                "cannot read API key store %s: %s; keeping %d previously loaded keys", self.path, exc, len(self._keys)
            )
            return
        self._keys, self._stamp = keys, stamp

    def refresh(self, max_age_s: float = 1.0) -> None:
        """Re-read the file if it changed, at most every ``max_age_s`` seconds."""
        now = self.clock.monotonic()
        if now - self._checked < max_age_s:
            return
        with self._lock:
            self._checked = now
            self._load()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"keys": [asdict(k) for k in self._keys.values()]}, f, indent=2)
        os.replace(tmp, self.path)
        self._stamp = None

    # --- operations ------------------------------------------------------------
    def keys(self) -> list[ApiKey]:
        """All keys, active and revoked, oldest first."""
        with self._lock:
            self._load()
            return sorted(self._keys.values(), key=lambda k: k.created)

    def has_active(self) -> bool:
        """Whether any key is active (then auth turns on, even on loopback)."""
        self.refresh()
        return any(k.active for k in self._keys.values())

    def create(self, tenant: str, scopes: list[str] | tuple[str, ...], name: str | None = None) -> tuple[str, ApiKey]:
        """Create a key; return ``(token, key)``. The token is shown once and never stored.

        Raises:
            ValueError: for an empty tenant or an unknown scope.
        """
        tenant = tenant.strip()
        if not tenant:
            raise ValueError("tenant must not be empty")
        unknown = sorted(set(scopes) - ALL_SCOPES)
        if unknown or not scopes:
            raise ValueError(f"unknown or missing scopes {unknown}; choose from {list(SCOPES)}")
        with self._lock:
            self._load()
            key_id = secrets.token_hex(6)
            token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            key = ApiKey(
                key_id=key_id,
                tenant=tenant,
                scopes=sorted(set(scopes)),
                sha256=hash_token(token),
                created=self.clock.time(),
                name=name,
            )
            self._keys[key_id] = key
            self._save()
        return token, key

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (it stays listed, marked revoked).

        Raises:
            KeyError: when no key has that id.
        """
        with self._lock:
            self._load()
            key = self._keys[key_id]
            if key.revoked is None:
                key.revoked = self.clock.time()
                self._save()
            return key

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key matching ``token``, or None (constant-time hash comparison)."""
        self.refresh()
        key_id = token[len(TOKEN_PREFIX) :].split("_", 1)[0] if token.startswith(TOKEN_PREFIX) else ""
        key = self._keys.get(key_id)
        # Compare even when the id is unknown so timing does not reveal which ids exist.
        expected = key.sha256 if key is not None else "0" * 64
        ok = hmac.compare_digest(expected, hash_token(token))
        return key if ok and key is not None and key.active else None


def default_keys_path(home: Path) -> Path:
    """``$GREENLIST_HOME/api_keys.json``."""
    return Path(home) / "api_keys.json"
