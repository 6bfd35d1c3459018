"""The kiosk's gate for staff orders: signature, target, expiry and sequence, before any effect.

Checks run in this order, and the first that fails rejects the order:

1. the envelope parses and is bounded (``malformed``);
2. a trusted key signed exactly this body (``unknown-key``, ``bad-signature``);
3. the order is for the topic it came on (``misrouted``: a signed ``identify`` re-sent
   on ``cmd/restart``, or a command re-sent as a config);
4. the order names this kiosk, its site or the fleet (``wrong-target``);
5. it has not expired (``expired``) — only while the clock is known to be right;
6. its ``seq`` is above the highest this kiosk accepted from that key (``replayed`` for
   the same number, ``old-sequence`` for a lower one);
7. its ``seq`` is not too far ahead (``future-sequence``, below).

:meth:`Guard.check` writes nothing, so a refused or replayed order leaves no trace on
disk (a flood of captured orders cannot wear out the SD card). The caller checks
what the order asks (a config must fit) and only then :meth:`Guard.accept` writes the
sequence number (durably: it survives a reboot), before acting.

**Why ``seq`` may not jump.** The kiosk keeps the highest ``seq`` per key, so one
order with ``seq`` 2^53 (or signed on a staff machine whose clock is a year ahead:
``kioskctl`` numbers orders by its clock in milliseconds) would make every later order
of that key ``old-sequence`` on every kiosk that saw it, with no way back. So an
order's ``seq`` may be at most :data:`AHEAD_S` ahead of the kiosk's synchronised
clock. Unsynchronised, the clock may be behind by as long as the kiosk was off, so
the bound is :data:`AHEAD_UNSYNCED_S` ahead of the later of the clock and the highest
``seq`` it ever accepted (orders are numbered by time: that one had been issued by
then). A refused order is not recorded, so it locks nothing out; the worst a still-admitted
order from a fast clock can do is lock its key out for that bound. Scoping sequences
(per target or per staff machine) would not help: each scope would still be lockable,
and per-machine scopes let an old machine's orders be replayed once its record is gone.

A Raspberry Pi has no real-time clock: until
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

AHEAD_S = 600.0
"""How far ahead of a synchronised clock an order's ``seq`` (milliseconds) may be."""
AHEAD_UNSYNCED_S = 86400.0
"""The same while the clock is not synchronised (it may be behind by the time it was off)."""
REPLAYABLE = frozenset({"misrouted", "wrong-target", "expired", "replayed", "old-sequence",
                        "future-sequence"})
"""Refusals anyone can provoke by re-sending a captured signed order."""


class SequenceBook:
    """The highest sequence number accepted per staff key, in the kiosk's database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def last(self, kid: str) -> int:
        """The highest accepted ``seq`` signed by ``kid``, 0 if none."""
        row = self._conn.execute("SELECT seq FROM staff_seq WHERE key_id = ?", (kid,)).fetchone()
        return int(row[0]) if row else 0

    def highest(self) -> int:
        """The highest ``seq`` accepted from any key, 0 if none."""
        row = self._conn.execute("SELECT MAX(seq) FROM staff_seq").fetchone()
        return int(row[0] or 0)

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
        order = self.check(sealed, kind, name)
        self.accept(sealed)
        return order

    def accept(self, sealed: Sealed) -> None:
        """Record a checked order as carried out: its ``seq`` can never be used again."""
        self._book.accept(sealed.kid, sealed.order)

    def check(self, sealed: Sealed, kind: str, name: str) -> Order:
        """Check ``sealed`` as it arrived for ``kind``/``name`` and return its order, or raise
        :class:`Rejected`; writes nothing."""
        sealed.verify(self._verifier)
        order = sealed.order
        if (order.kind, order.name) != (kind, name):
            raise Rejected("misrouted", f"a signed {order.kind} {order.name!r} "
                                        f"arrived as {kind} {name!r}")
        if order.target not in self._targets:
            raise Rejected("wrong-target", f"for {order.target}, this is {self._targets[0]}")
        synced = self._clock_trusted()
        if synced:
            late = self._wall() - order.expires_at
            if late > 0:
                raise Rejected("expired", f"expired {late:.0f} s ago")
        last = self._book.last(sealed.kid)
        if order.seq == last:
            raise Rejected("replayed", f"seq {order.seq} was already carried out")
        if order.seq < last:
            raise Rejected("old-sequence", f"seq {order.seq} is below the last accepted {last}")
        now_ms = int(self._wall() * 1000)
        if not synced:
            now_ms = max(now_ms, self._book.highest())
        ahead = (order.seq - now_ms) / 1000
        if ahead > (AHEAD_S if synced else AHEAD_UNSYNCED_S):
            clock = "clock" if synced else "unsynchronised clock"
            raise Rejected("future-sequence", f"seq {order.seq} is {ahead:.0f} s ahead of "
                                              f"this kiosk's {clock}: is the staff machine's "
                                              "clock right?")
        return order
