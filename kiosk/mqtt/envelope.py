"""The signed envelope around every staff order: a command, a desired config, an enrollment.

Shared by the kiosk (which opens and checks it) and ``kioskctl`` (which seals it).
On the wire::

    {"v":1,"body":{"kind":"cmd","name":"identify","target":"shop/kiosk-1",
                   "cmd_id":"…","seq":1795388285351,"expires_at":1795388585.0,"args":{}},
     "kid":"3f2a…","sig":"<base64url Ed25519 signature>"}

What is signed is :func:`signed_bytes` of ``body``: a fixed domain prefix and the
body as canonical JSON (sorted keys, no spaces, ASCII only). The kiosk
re-serialises the body it parsed and verifies that, so the order it acts on is
exactly the order that was verified; a changed byte anywhere in ``body`` (or a
signature moved to another body) fails. The target names the topic level pair
``<site>/<device_id>``, ``<site>/_all`` or ``_all/_all``, so an order for one
kiosk cannot be replayed to another. ``seq`` grows with every order a key signs;
the kiosk keeps the highest it accepted per key, and that, not the clock, stops a
replay. ``expires_at`` (Unix seconds) limits how long an order lasts where the
kiosk's clock can be trusted.

An enrollment carries ``mac`` too: an HMAC-SHA256 of the same bytes keyed by the
pairing code on the kiosk's screen (see :mod:`kiosk.provisioning.enrollment`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from kiosk import KioskError
from kiosk.mqtt.protocol import ALL
from kiosk.mqtt.wire import Fields, Limits, ProtocolError, load_object
from kiosk.trust.signing import (
    SIGNATURE_BYTES,
    SignatureError,
    Signer,
    Verifier,
    b64decode,
    b64encode,
)

VERSION = 1
DOMAIN = b"loyalty-kiosk/staff-order/v1\x00"
"""Prefix of every signed message: a signature over an order is useless anywhere else."""
KINDS = ("cmd", "config", "enroll")
MAX_BYTES = 64 * 1024
"""Largest envelope accepted (a whole config fits in a few KiB)."""
MAX_DEPTH = 8
MAX_STRING = 4096
MAX_SEQ = 2**53  # exact in every JSON implementation
LIMITS = Limits(max_bytes=MAX_BYTES, max_depth=MAX_DEPTH, max_string=MAX_STRING)


UNVERIFIED = frozenset({"malformed", "unknown-key", "bad-signature"})
"""Refusal codes of messages nobody trusted has signed: anyone on the broker can send them."""


class Rejected(KioskError, ValueError):
    """An order that must not be carried out; ``code`` is a stable word scripts can test."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code

    @property
    def signed(self) -> bool:
        """True when a trusted key signed the refused order (it got past the signature)."""
        return self.code not in UNVERIFIED


@dataclass(frozen=True)
class Order:
    """What staff ask one kiosk, a site or the fleet to do."""

    kind: str
    """``cmd``, ``config`` or ``enroll``."""
    name: str
    """The command's name (``identify``, ``restart`` …), or ``config`` / ``enroll``."""
    target: str
    """``<site>/<device_id>``, ``<site>/_all`` or ``_all/_all``."""
    cmd_id: str
    seq: int
    expires_at: float
    args: dict[str, Any] = field(default_factory=dict)
    """The command's arguments, or ``{"version": N, "config": {...}}`` for a config."""


@dataclass(frozen=True)
class Sealed:
    """An envelope as received: its order, who claims to have signed it, and the proof."""

    order: Order
    kid: str
    signature: bytes
    mac: bytes | None = None

    def verify(self, verifier: Verifier) -> None:
        """Return if a trusted key signed this order; else raise :class:`Rejected`."""
        try:
            verifier.verify(self.kid, self.signature, signed_bytes(self.order))
        except SignatureError as exc:
            code = "unknown-key" if str(exc) == "unknown key id" else "bad-signature"
            raise Rejected(code, f"{exc} ({self.kid})") from None

    def mac_matches(self, secret: str) -> bool:
        """True when ``mac`` was made with ``secret`` (the enrollment pairing code)."""
        return self.mac is not None and hmac.compare_digest(self.mac, mac(secret, self.order))


def target_for(site: str = ALL, device_id: str = ALL) -> str:
    """The target naming one kiosk, every kiosk of a site, or (the default) the fleet."""
    return f"{site}/{device_id}"


def targets_of(site: str, device_id: str) -> tuple[str, str, str]:
    """Every target a kiosk obeys: itself, its site, the fleet."""
    return target_for(site, device_id), target_for(site), target_for()


def signed_bytes(order: Order) -> bytes:
    """The exact bytes an order's signature covers."""
    return DOMAIN + json.dumps(asdict(order), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=True, allow_nan=False).encode("ascii")


def mac(secret: str, order: Order) -> bytes:
    """HMAC-SHA256 of the order keyed by a shared secret (the pairing code)."""
    return hmac.new(secret.encode(), signed_bytes(order), hashlib.sha256).digest()


def seal(order: Order, signer: Signer, pairing_code: str | None = None) -> bytes:
    """The envelope as sent: the order, its key id and signature (and MAC for enrollment)."""
    envelope: dict[str, Any] = {
        "v": VERSION, "body": asdict(order), "kid": signer.key_id,
        "sig": b64encode(signer.sign(signed_bytes(order))),
    }
    if pairing_code is not None:
        envelope["mac"] = b64encode(mac(pairing_code, order))
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


def unseal(payload: bytes | bytearray) -> Sealed:
    """Parse and bound an envelope; raise :class:`Rejected` (code ``malformed``) if it is not one.

    Nothing here is trusted yet: the caller must :meth:`Sealed.verify` it.
    """
    try:
        envelope = Fields(load_object(payload, LIMITS))
        if envelope.integer("v", 0, MAX_SEQ) != VERSION:
            raise ProtocolError(f"not a version {VERSION} envelope")
        body = envelope.body.get("body")
        if not isinstance(body, dict):
            raise ProtocolError("body: missing or not an object")
        fields, args = Fields(body), body.get("args")
        if not isinstance(args, dict):
            raise ProtocolError("args: missing or not an object")
        order = Order(
            kind=_word(fields, "kind", 16), name=_word(fields, "name", 32),
            target=fields.text("target", 130), cmd_id=fields.text("cmd_id", 64),
            seq=fields.integer("seq", 1, MAX_SEQ), expires_at=fields.number("expires_at", 0, 2**40),
            args=args,
        )
        if set(body) != set(asdict(order)):
            raise ProtocolError("unknown or missing fields in body")
        if order.kind not in KINDS:
            raise ProtocolError(f"unknown kind {order.kind!r}")
        signature = b64decode(envelope.text("sig", 128), SIGNATURE_BYTES)
        tag = b64decode(envelope.text("mac", 64), 32) if "mac" in envelope.body else None
        return Sealed(order, envelope.text("kid", 16), signature, tag)
    except (ProtocolError, SignatureError) as exc:
        raise Rejected("malformed", str(exc)) from None


def _word(fields: Fields, name: str, limit: int) -> str:
    value = fields.text(name, limit)
    if not value or not value.isascii() or not value.replace("-", "").replace("_", "").isalnum():
        raise ProtocolError(f"field {name!r}: expected letters, digits, '-' or '_'")
    return value
