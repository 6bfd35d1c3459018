"""Member codes and what the kiosk knows about a member.

Logs never hold a full member id: :func:`redact` gives a short hash, keyed per
install, that still lets staff match log lines to each other.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace

from kiosk.trust.signing import SignatureError, Signer, Verifier, b64decode, b64encode


@dataclass(frozen=True)
class MemberStatus:
    """A member's standing as the backend last reported it."""

    display_name: str
    balance: int
    tier: str
    points_to_next: int
    """Points still needed for the next reward (not the next tier)."""
    progress: float
    reward_unlocked: str = ""
    next_reward: str = ""
    """The name of the reward ``points_to_next`` leads to; empty when the backend does not say."""
    points_earned: int = 0
    tier_changed: bool = False
    badge: str = ""
    """A badge earned with this visit."""

    def standing(self) -> MemberStatus:
        """The lasting part, without what happened on this visit (for the member cache)."""
        return replace(self, reward_unlocked="", points_earned=0, tier_changed=False, badge="")


CARD_PREFIX = "LOY1."
CARD_MESSAGE = b"loyalty-kiosk member card v1\n"
"""Signed in front of every card, so a card signature can never pass for a staff message."""
MEMBER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a member id inside a signed card may be: it is also a field of the card."""
TAG_ID = re.compile(r"uid:[0-9A-F]{8,20}")
"""An NFC or 125 kHz tag's UID, as the readers hand it up."""
MAX_CODE = 512
TAG_SOURCES = ("nfc",)
"""Sources that read tags whatever their config: a camera, a keyboard wedge or a QR scanner
handing up "uid:..." read a printed forgery (the serial reader reads tags only with RFID
framing, see :func:`tag_sources`)."""

_NOT_MEMBER_CODES = (
    (re.compile(r"(?i)(https?://|www\.)"), "Web address"),
    (re.compile(r"(?i)WIFI:"), "Wi-Fi settings"),
    (re.compile(r"(?i)(BEGIN:VCARD|MECARD:)"), "Contact card"),
    (re.compile(r"(?i)(mailto:|tel:|sms(to)?:|geo:|BEGIN:VEVENT)"), "Not a member code"),
)


@dataclass(frozen=True)
class Refused:
    """A code that is not a member's, and why in two or three words (screen and log)."""

    reason: str


class MemberCodes:
    """Recognises member codes; anything else is refused with a reason and nothing is sent.

    Three kinds of member code, each from config:

    * a plain id matching ``pattern`` (``""``: none accepted);
    * a **signed member card** ``LOY1.<key id>.<member id>.<signature>``: Ed25519 by
      one of the trusted card-issuer keys, checked offline, so a guessed or edited
      id is refused without asking the backend. The kiosk holds public keys only:
      a stolen kiosk cannot make cards;
    * a tag id ``uid:<HEX>`` from one of ``tag_sources`` (NFC or RFID readers), when
      ``tag_ids`` is on.
    """

    def __init__(self, pattern: str, card_issuers: Verifier | None = None,
                 tag_ids: bool = True, tag_sources: tuple[str, ...] = TAG_SOURCES) -> None:
        self._pattern = re.compile(pattern) if pattern else None
        self._issuers = card_issuers
        self._tag_ids = tag_ids
        self._tag_sources = tag_sources

    def parse(self, code: str, source: str = "") -> str | Refused:
        """The member id ``code`` stands for, or why it is refused."""
        if len(code) > MAX_CODE:
            return Refused("Code too long")
        if "\ufffd" in code or not code.isprintable():
            return Refused("Unreadable code")  # not UTF-8, or control characters
        code = code.strip()
        if code.startswith(CARD_PREFIX):
            return self._card(code)
        if TAG_ID.fullmatch(code):
            if not self._tag_ids or source not in self._tag_sources:
                return Refused("Tag not accepted")
            return code
        if self._pattern is not None and self._pattern.fullmatch(code):
            return code
        for kind, reason in _NOT_MEMBER_CODES:
            if kind.match(code):
                return Refused(reason)
        return Refused("Not a member code")

    def _card(self, code: str) -> str | Refused:
        parts = code[len(CARD_PREFIX):].split(".")
        if len(parts) != 3 or not MEMBER_ID.fullmatch(parts[1]):
            return Refused("Damaged card")
        kid, member_id, signature = parts
        if self._issuers is None:
            return Refused("Unknown card issuer")
        try:
            self._issuers.verify(kid, b64decode(signature), card_message(kid, member_id))
        except SignatureError as exc:
            return Refused("Unknown card issuer" if "key id" in str(exc) else "Card not valid")
        return member_id


def tag_sources(serial_framing: str) -> tuple[str, ...]:
    """The sources whose ``uid:`` codes are tags: the NFC reader, and the serial reader when
    its framing is an RFID module's (``stx-etx``). With ``lines`` it is a QR or barcode
    scanner, and a "uid:" it reads was printed."""
    return (*TAG_SOURCES, "serial") if serial_framing == "stx-etx" else TAG_SOURCES


def card_message(kid: str, member_id: str) -> bytes:
    """The bytes a card's signature covers: a fixed prefix, the key id and the member id."""
    return CARD_MESSAGE + f"{kid}\n{member_id}".encode()


def sign_card(issuer: Signer, member_id: str) -> str:
    """The text of a signed member card (about 120 characters: a version 7 QR code)."""
    if not MEMBER_ID.fullmatch(member_id):
        raise ValueError("a member id on a card is 1-64 letters, digits, '_' or '-'")
    signature = issuer.sign(card_message(issuer.key_id, member_id))
    return f"{CARD_PREFIX}{issuer.key_id}.{member_id}.{b64encode(signature)}"


LOG_KEY_BYTES = 32
_log_key = secrets.token_bytes(LOG_KEY_BYTES)
"""Until :func:`use_log_key` is called: a random key of this process's own."""


def use_log_key(key: bytes) -> None:
    """Key :func:`redact` with the install's secret (``kiosk run`` reads it from the state
    directory), so its hashes stay the same across restarts but differ between installs."""
    global _log_key
    if len(key) < 16:
        raise ValueError("a log key is 16 bytes or more")
    _log_key = key


def redact(member_id: str) -> str:
    """A short hash of a member id, safe for logs.

    An unkeyed hash of a member id can be reversed by hashing every id the member
    pattern allows (``LOY-`` and a few digits takes seconds); keyed with a secret that
    never leaves the kiosk, a hash names no one to whoever reads the log elsewhere.
    64 bits keep different members apart in a log of any size.
    """
    digest = hmac.new(_log_key, member_id.encode(), hashlib.sha256).hexdigest()
    return "m:" + digest[:16]
