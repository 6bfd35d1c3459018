"""Ed25519 keys and signatures: one implementation for staff messages and signed member cards.

Why Ed25519 through ``cryptography``: small keys and signatures (32 and 64 bytes,
short enough for a QR code), deterministic signing (no random-number failure
mode on a freshly booted Pi), fast verification, and ``cryptography`` has wheels
on PyPI for aarch64/armv7 (Raspberry Pi OS also packages it, but bookworm's 38 is
older than the 40 needed here, so pip puts a wheel in the kiosk's venv), where
PyNaCl would add libsodium for no gain. Raw key bytes come from
``public_bytes_raw``/``private_bytes_raw`` (new in 40): the ``serialization``
module they replace cost the daemon 50 ms of its start-up.

Keys travel as text: the raw 32-byte key in unpadded base64url. A key is named
by its *key id*, the first 16 hex digits of the SHA-256 of the raw public key,
so a verifier picks the right trusted key without trying them all, and a key
can be revoked by removing one line of config.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kiosk import KioskError

SIGNATURE_BYTES = 64
KEY_BYTES = 32


class SignatureError(KioskError, ValueError):
    """A key or a signature is unusable; the text says why in a few words."""


def b64encode(data: bytes) -> str:
    """Unpadded base64url: what keys and signatures look like in JSON and QR codes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str, size: int | None = None) -> bytes:
    """Inverse of :func:`b64encode`; ``size`` is the exact length expected, if any."""
    if not isinstance(text, str) or not text.isascii() or len(text) > 4096:
        raise SignatureError("not base64url text")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError("not base64url text") from None
    if size is not None and len(data) != size:
        raise SignatureError(f"expected {size} bytes, got {len(data)}")
    return data


def key_id(public: Ed25519PublicKey) -> str:
    """The short public name of a key."""
    return hashlib.sha256(public.public_bytes_raw()).hexdigest()[:16]


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """A public key written by :func:`public_key_text`."""
    return Ed25519PublicKey.from_public_bytes(b64decode(text.strip(), KEY_BYTES))


def public_key_text(public: Ed25519PublicKey) -> str:
    """A public key as one short line of text."""
    return b64encode(public.public_bytes_raw())


class Signer:
    """A private key with its key id; only staff machines and card printers hold one."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def generate(cls) -> Signer:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """A private key written by :meth:`text`."""
        return cls(Ed25519PrivateKey.from_private_bytes(b64decode(text.strip(), KEY_BYTES)))

    def text(self) -> str:
        """The private key as one line of text (keep it secret: mode 600)."""
        return b64encode(self._private.private_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message``."""
        return self._private.sign(message)


class Verifier:
    """The public keys a kiosk trusts, by key id."""

    def __init__(self, trusted: dict[str, Ed25519PublicKey]) -> None:
        self._trusted = trusted

    @classmethod
    def from_texts(cls, texts: list[str]) -> Verifier:
        """Trust the public keys written by :func:`public_key_text`."""
        keys = [public_key_from_text(text) for text in texts]
        return cls({key_id(key): key for key in keys})

    def verify(self, kid: str, signature: bytes, message: bytes) -> None:
        """Return if ``signature`` over ``message`` is by trusted key ``kid``; else raise."""
        public = self._trusted.get(kid)
        if public is None:
            raise SignatureError("unknown key id")
        if len(signature) != SIGNATURE_BYTES:
            raise SignatureError("bad signature length")
        try:
            public.verify(signature, message)
        except InvalidSignature:
            raise SignatureError("bad signature") from None
