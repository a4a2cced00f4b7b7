"""Signed verification certificates (Ed25519), checkable offline without the watermark secret.

A certificate is ``{"certificate": PAYLOAD, "signature": {...}}``. The
signature is Ed25519 over the canonical JSON of PAYLOAD
(``json.dumps(payload, sort_keys=True, separators=(",", ":"))``, UTF-8). The
payload binds the verdict to the text through ``text_sha256``: the SHA-256 of
the text after :func:`certificate_text` (Unicode NFC, format characters such as
zero-width spaces removed, surrounding white space stripped). Checking one
needs only the ``cryptography`` package and the issuer's published public key
(``GET /v1/watermark/keys``)::

    import base64, hashlib, json, unicodedata
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    cert = json.load(open("certificate.json"))
    payload = json.dumps(cert["certificate"], sort_keys=True, separators=(",", ":")).encode()
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(cert["signature"]["public_key"]))
    key.verify(base64.b64decode(cert["signature"]["value"]), payload)   # raises InvalidSignature
    text = unicodedata.normalize("NFC", open("text.txt", encoding="utf-8").read())
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").strip()
    assert hashlib.sha256(text.encode()).hexdigest() == cert["certificate"]["text_sha256"]
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY_FILE = "signing_key.pem"
TEXT_NORMALIZATION = "Unicode NFC; format characters (category Cf) removed; surrounding white space stripped"


def certificate_text(text: str) -> str:
    """The normalised text whose SHA-256 a certificate carries (see module docstring)."""
    return "".join(c for c in unicodedata.normalize("NFC", text) if unicodedata.category(c) != "Cf").strip()


def text_sha256(text: str) -> str:
    """Hex SHA-256 of :func:`certificate_text` of ``text``."""
    return hashlib.sha256(certificate_text(text).encode("utf-8")).hexdigest()


def canonical(payload: dict[str, Any]) -> bytes:
    """Canonical JSON bytes that are signed."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Signer:
    """The issuer's Ed25519 signing key.

    Attributes:
        private_key: The Ed25519 private key (never leaves the server).
        key_id: ``ed25519-`` + first 16 hex digits of SHA-256 of the raw public key.
    """

    private_key: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        """Raw 32-byte public key."""
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """Public id of the signing key."""
        return "ed25519-" + hashlib.sha256(self.public_bytes).hexdigest()[:16]

    def public(self) -> dict[str, str]:
        """The published form of the verification key."""
        return {"key_id": self.key_id, "algorithm": "Ed25519", "public_key": _b64(self.public_bytes)}

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Return the certificate for ``payload`` (adds ``issued_at`` and the signing key id)."""
        payload = {
            **payload,
            "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "signing_key_id": self.key_id,
        }
        signature = self.private_key.sign(canonical(payload))
        return {
            "certificate": payload,
            "signature": {
                "algorithm": "Ed25519",
                "key_id": self.key_id,
                "public_key": _b64(self.public_bytes),
                "value": _b64(signature),
            },
        }


def create_signing_key(path: Path) -> Signer:
    """Write a new Ed25519 signing key as PKCS#8 PEM at ``path`` (mode 0600, never overwriting).

    Raises:
        FileExistsError: when ``path`` exists.
    """
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return signer_from_pem(pem, str(path))


def signer_from_pem(pem: bytes, origin: str = "the signing key") -> Signer:
    """A :class:`Signer` from an Ed25519 private key in PEM (PKCS#8), or its raw 32 bytes in base64.

    Args:
        pem: The key (``-----BEGIN PRIVATE KEY-----`` ...), or base64 of the 32-byte private seed.
        origin: Where it came from, for error messages.

    Raises:
        ValueError: when it is not an Ed25519 private key.
    """
    text = pem.strip()
    if not text.startswith(b"-----"):
        try:
            return Signer(Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True)))
        except ValueError as exc:
            raise ValueError(f"{origin}: neither a PEM Ed25519 private key nor base64 of 32 raw bytes") from exc
    key = serialization.load_pem_private_key(text, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{origin} is not an Ed25519 private key")
    return Signer(key)


def load_signer(home: Path, path: Path | None = None) -> Signer:
    """Load the signing key.

    Args:
        home: The Greenlist data directory: ``$GREENLIST_HOME/signing_key.pem`` (mode 0600) is created on
            first use when ``path`` is None (one replica only).
        path: A PEM file that must exist (a shared key from ``greenlist secrets init``); never created.

    Raises:
        FileNotFoundError: when ``path`` is given and missing.
        ValueError: when the file is not an Ed25519 private key.
    """
    if path is not None:
        return signer_from_pem(Path(path).read_bytes(), str(path))
    path = home / SIGNING_KEY_FILE
    if not path.exists():
        return create_signing_key(path)
    return signer_from_pem(path.read_bytes(), str(path))


def check_certificate(cert: dict[str, Any], text: str, trusted_keys: list[str] | None = None) -> tuple[bool, str]:
    """Check a certificate offline.

    Args:
        cert: The certificate JSON (``{"certificate", "signature"}``).
        text: The text it claims to describe.
        trusted_keys: Base64 public keys to accept; None accepts the key
            embedded in the certificate (then compare its ``key_id`` with the
            issuer's published keys yourself).

    Returns:
        ``(ok, reason)``; ``ok`` only when the signature is valid, the key is
        trusted and the text's SHA-256 matches.
    """
    try:
        payload, sig = cert["certificate"], cert["signature"]
        public_b64 = sig["public_key"]
        if sig.get("algorithm") != "Ed25519":
            return False, f"unsupported signature algorithm {sig.get('algorithm')!r}"
        if trusted_keys is not None and public_b64 not in trusted_keys:
            return False, "the certificate is signed by a key that is not in the trusted keys"
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64)).verify(
            base64.b64decode(sig["value"]), canonical(payload)
        )
    except InvalidSignature:
        return False, "invalid signature: the certificate was altered or not issued by this key"
    except (KeyError, TypeError, ValueError) as exc:
        return False, f"malformed certificate: {exc}"
    if payload.get("text_sha256") != text_sha256(text):
        return False, "the text does not match the certificate (SHA-256 differs)"
    return True, f"valid: {payload.get('verdict')} (z={payload.get('z_score')}), signed by {sig.get('key_id')}"
