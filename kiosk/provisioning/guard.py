"""The kiosk's gate for staff orders: signature, target, expiry and sequence, before any effect.

Checks run in this order, and the first that fails rejects the order:

1. the envelope parses and is bounded (``malformed``);
2. a trusted key signed exactly this body (``unknown-key``, ``bad-signature``);
3. the order is for the topic it came on (``misrouted``: a signed ``identify`` re-sent
   on ``cmd/restart``, or a command re-sent as a config);
4. the order names this kiosk, its site or the fleet (``wrong-target``);
5. it has not expired (``expired``) — only while the clock is known to be right;
6. its ``seq`` is above the highest this kiosk accepted from that key (``replayed`` for
   the same number, ``old-sequence`` for a lower one).

Only then is the sequence number written (durably: it survives a reboot), and only
after that does the caller act. A Raspberry Pi has no real-time clock: until
systemd-timesyncd has synchronised it (it creates ``clock_synced_file``), its time
can be days behind or ahead, so ``expires_at`` is not checked and the sequence
number alone stops replays. An order that arrives late on an unsynchronised kiosk
is carried out if nothing newer from its key was accepted before.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from kiosk.mqtt.envelope import Order, Rejected, Sealed, targets_of
from kiosk.trust.signing import Verifier

log = logging.getLogger(__name__)


class SequenceBook:
    """The highest sequence number accepted per staff key, in the kiosk's database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def last(self, kid: str) -> int:
        """The highest accepted ``seq`` signed by ``kid``, 0 if none."""
        row = self._conn.execute("SELECT seq FROM staff_seq WHERE key_id = ?", (kid,)).fetchone()
        return int(row[0]) if row else 0

    def accept(self, kid: str, order: Order) -> None:
        """Record ``order`` as carried out (committed before this returns)."""
        self._conn.execute(
            "INSERT INTO staff_seq (key_id, seq, cmd_id, accepted_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key_id) DO UPDATE SET seq = excluded.seq, cmd_id = excluded.cmd_id, "
            "accepted_at = excluded.accepted_at WHERE excluded.seq > staff_seq.seq",
            (kid, order.seq, order.cmd_id, time.time()))


def clock_synced(marker: str) -> Callable[[], bool]:
    """True while ``marker`` exists; an empty marker means the clock is always trusted."""
    return (lambda: Path(marker).exists()) if marker else (lambda: True)


class Guard:
    """Admits an order only when every check passes; controller thread only."""

    def __init__(self, verifier: Verifier, site: str, device_id: str, book: SequenceBook,
                 clock_trusted: Callable[[], bool], wall: Callable[[], float] = time.time,
                 ) -> None:
        self._verifier = verifier
        self._targets = targets_of(site, device_id)
        self._book = book
        self._clock_trusted = clock_trusted
        self._wall = wall

    def admit(self, sealed: Sealed, kind: str, name: str) -> Order:
        """Check ``sealed`` as it arrived for ``kind``/``name``; record and return its order."""
        sealed.verify(self._verifier)
        order = sealed.order
        if (order.kind, order.name) != (kind, name):
            raise Rejected("misrouted", f"a signed {order.kind} {order.name!r} "
                                        f"arrived as {kind} {name!r}")
        if order.target not in self._targets:
            raise Rejected("wrong-target", f"for {order.target}, this is {self._targets[0]}")
        if self._clock_trusted():
            late = self._wall() - order.expires_at
            if late > 0:
                raise Rejected("expired", f"expired {late:.0f} s ago")
        last = self._book.last(sealed.kid)
        if order.seq == last:
            raise Rejected("replayed", f"seq {order.seq} was already carried out")
        if order.seq < last:
            raise Rejected("old-sequence", f"seq {order.seq} is below the last accepted {last}")
        self._book.accept(sealed.kid, order)
        return order
