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
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from kiosk import KioskError
from kiosk.protocol import ALL
from kiosk.signing import SIGNATURE_BYTES, SignatureError, Signer, Verifier, b64decode, b64encode

VERSION = 1
DOMAIN = b"loyalty-kiosk/staff-order/v1\x00"
"""Prefix of every signed message: a signature over an order is useless anywhere else."""
KINDS = ("cmd", "config", "enroll")
MAX_BYTES = 64 * 1024
"""Largest envelope accepted (a whole config fits in a few KiB)."""
MAX_DEPTH = 8
MAX_STRING = 4096
MAX_SEQ = 2**53  # exact in every JSON implementation


class Rejected(KioskError, ValueError):
    """An order that must not be carried out; ``code`` is a stable word scripts can test."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


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
    if len(payload) > MAX_BYTES:
        raise Rejected("malformed", f"{len(payload)} bytes (at most {MAX_BYTES})")
    try:
        envelope = json.loads(payload, parse_constant=_no_constant)
        _check_bounds(envelope, 0)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected("malformed", f"not JSON: {exc}") from None
    except RecursionError:
        raise Rejected("malformed", "nested too deeply") from None
    except ValueError as exc:
        raise Rejected("malformed", str(exc)) from None
    if not isinstance(envelope, dict) or envelope.get("v") != VERSION:
        raise Rejected("malformed", f"not a version {VERSION} envelope")
    body = _get(envelope, "body", dict)
    order = Order(
        kind=_word(body, "kind", 16), name=_word(body, "name", 32),
        target=_text(body, "target", 130), cmd_id=_text(body, "cmd_id", 64),
        seq=_get(body, "seq", int), expires_at=_time(body, "expires_at"),
        args=_get(body, "args", dict),
    )
    if set(body) != set(asdict(order)):
        raise Rejected("malformed", "unknown or missing fields in body")
    if order.kind not in KINDS:
        raise Rejected("malformed", f"unknown kind {order.kind!r}")
    if not 0 < order.seq < MAX_SEQ:
        raise Rejected("malformed", "seq out of range")
    try:
        signature = b64decode(_text(envelope, "sig", 128), SIGNATURE_BYTES)
        tag = b64decode(_text(envelope, "mac", 64), 32) if "mac" in envelope else None
    except SignatureError as exc:
        raise Rejected("malformed", f"signature: {exc}") from None
    return Sealed(order, _text(envelope, "kid", 16), signature, tag)


# --- bounds -------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _check_bounds(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ValueError(f"a string of {len(value)} characters (at most {MAX_STRING})")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string with a lone surrogate") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a number that is not finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_bounds(key, depth + 1)
            _check_bounds(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_bounds(item, depth + 1)


def _get(table: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = table.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise Rejected("malformed", f"{name}: missing or of the wrong type")
    return value


def _time(table: dict[str, Any], name: str) -> float:
    value = _get(table, name, (int, float))
    if not 0 <= value < 2**40:  # also keeps float() of a huge integer from overflowing
        raise Rejected("malformed", f"{name}: expected Unix seconds")
    return float(value)


def _text(table: dict[str, Any], name: str, limit: int) -> str:
    value: str = _get(table, name, str)
    if not 0 < len(value) <= limit:
        raise Rejected("malformed", f"{name}: expected 1 to {limit} characters")
    return value


def _word(table: dict[str, Any], name: str, limit: int) -> str:
    value = _text(table, name, limit)
    if not value.replace("-", "").replace("_", "").isalnum() or not value.isascii():
        raise Rejected("malformed", f"{name}: expected letters, digits, '-' or '_'")
    return value
