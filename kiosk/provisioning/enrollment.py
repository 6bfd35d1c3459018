"""Enrollment: a kiosk that trusts no staff key yet is paired with a code on its screen.

An unprovisioned kiosk (``staff.trusted_keys`` empty) makes a random pairing code
at start, shows it with its device id instead of the idle screen, and publishes a
retained enrollment request (the code is *not* in it: only someone standing at
the kiosk can read it). ``kioskctl enroll DEVICE CODE`` answers on
``cmd/enroll`` with an envelope signed by the staff key being enrolled, carrying
that key, a first config and an HMAC of the order keyed by the code.

The kiosk checks the HMAC first (``wrong-code``); after three wrong codes it
refuses every attempt for 5 s, then 10, 20 … up to 5 minutes (``rate-limited``).
A code is 8 characters from 31 (about 40 bits), so guessing at that rate is
hopeless; the code changes at every start. Then the signature must be by the
key it names (the sender holds it), the target this kiosk, and the sequence new.
The first config then goes the way of any desired config: a trial that is rolled
back (to unprovisioned) if it does not connect.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from kiosk import __version__
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Order, Rejected, Sealed, target_for
from kiosk.provisioning.guard import Guard, SequenceBook
from kiosk.provisioning.shadow import Shadow
from kiosk.trust.signing import SignatureError, Verifier

log = logging.getLogger(__name__)

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/I/L: a code read off a small screen is typed right."""
CODE_LENGTH = 8
FREE_TRIES = 3
FIRST_LOCK_S = 5.0
MAX_LOCK_S = 300.0
UNPROVEN = frozenset({"already-enrolled", "rate-limited", "wrong-target", "wrong-code"})
"""Refusals of an enrollment before its pairing code matched: anyone can provoke them."""


def new_code() -> str:
    """A random pairing code."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def shown(code: str) -> str:
    """The code as the screen shows it: ``ABCD-EFGH``."""
    return f"{code[:4]}-{code[4:]}"


def normalized(typed: str) -> str:
    """What staff typed, as the kiosk compares it (case, dashes and spaces ignored)."""
    return typed.upper().replace("-", "").replace(" ", "")


class Enrollment:
    """The pairing code and its rate limit; controller thread only."""

    def __init__(self, waiting: bool, topics: protocol.Topics, shadow: Shadow,
                 book: SequenceBook, clock_trusted: Callable[[], bool],
                 publish: Callable[[str, bytes, bool], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.code = new_code() if waiting else ""
        self._topics = topics
        self._shadow = shadow
        self._book = book
        self._clock_trusted = clock_trusted
        self._publish = publish
        self._clock = clock
        self.failures = 0
        self._locked_until = 0.0
        if waiting:
            log.warning("no staff key trusted: waiting to be enrolled (pairing code on screen)")

    @property
    def waiting(self) -> bool:
        """True while no staff key is trusted."""
        return bool(self.code)

    def link_up(self) -> None:
        """Ask to be enrolled (retained), or clear a request left from before enrollment."""
        payload = (protocol.encode_enroll_request(self._topics.device_id, self._topics.site,
                                                  __version__) if self.waiting else b"")
        self._publish(self._topics.enroll, payload, True)

    def handle(self, sealed: Sealed) -> Order:
        """Check an enrollment and apply its first config (restart), or raise :class:`Rejected`."""
        if not self.waiting:
            raise Rejected("already-enrolled", "this kiosk trusts staff keys; send it a config")
        now = self._clock()
        if now < self._locked_until:
            raise Rejected("rate-limited", f"too many wrong codes; try again in "
                                           f"{self._locked_until - now:.0f} s")
        order = sealed.order
        if order.target != target_for(self._topics.site, self._topics.device_id):
            raise Rejected("wrong-target", "an enrollment names one kiosk")
        if not sealed.mac_matches(self.code):
            self.failures += 1
            if self.failures >= FREE_TRIES:
                lock = min(MAX_LOCK_S, FIRST_LOCK_S * 2 ** (self.failures - FREE_TRIES))
                self._locked_until = now + lock
            log.warning("enrollment with a wrong pairing code (%d so far)", self.failures)
            raise Rejected("wrong-code", "the pairing code does not match")
        key, version, table = (order.args.get(name) for name in ("key", "version", "config"))
        try:
            verifier = Verifier.from_texts([key if isinstance(key, str) else ""])
        except (SignatureError, ValueError):
            raise Rejected("invalid", "args.key: not a public key") from None
        guard = Guard(verifier, self._topics.site, self._topics.device_id, self._book,
                      self._clock_trusted)
        guard.check(sealed, "enroll", "enroll")
        staff = table.get("staff") if isinstance(table, dict) else None
        if not isinstance(staff, dict) or key not in (staff.get("trusted_keys") or []):
            raise Rejected("invalid", "config.staff.trusted_keys must hold the enrolling key")
        self._shadow.apply(order.cmd_id, version, table, lambda: guard.accept(sealed))
        log.info("enrolled by key %s; restarting with config version %s", sealed.kid, version)
        return order
