"""Moves check-ins from the outbox to the broker, deleting them once acknowledged.

Each row is handed to paho once per link; paho itself re-sends unacknowledged
QoS 1 messages (same message id, DUP flag) after a reconnect, and a rebuilt
link or a restart starts again from the oldest row. Delivery is at least
once; the backend deduplicates on ``event_id``. At most ``window`` rows are in
flight, which bounds memory.

**Order and the backlog.** A check-in scanned while the link is up is *live*:
it is sent at once, ahead of any backlog, so the customer at the counter gets
the answer within seconds even while thousands of visits from an outage are
being replayed. The backlog (rows stored while offline, or left from an
earlier run) goes out in the order it was scanned, marked ``"replayed": true``,
in the window's remaining room. Within each of the two streams the order is
the scan order; ``boot_id`` + ``seq`` give the backend the total order.

**Batches.** PUBACKs are collected and their rows deleted in one transaction
(:meth:`flush`), and the backlog refills the window a quarter of it at a time:
one query for many rows, not one per acknowledgement.
"""

from __future__ import annotations

import logging
import time

from kiosk.mqtt import protocol
from kiosk.mqtt.link import Link, LinkError
from kiosk.store.outbox import Outbox

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0
"""A row the broker refused, or gave to no subscriber, is offered again after this long."""
LIVE_LIMIT = 1000
"""Live rows kept in memory at most; beyond that they wait in the backlog like any other."""


class Publisher:
    """Outbox -> MQTT pump. Called only from the controller thread."""

    def __init__(self, outbox: Outbox, link: Link, window: int) -> None:
        self._outbox = outbox
        self._link = link
        self._window = window
        self._refill_at = max(1, window // 4)
        self._in_flight: dict[int, int] = {}  # paho mid -> outbox row id
        self._cursor = 0  # backlog: the highest row id handed to paho in id order
        self._live: list[tuple[int, bytes]] = []  # stored while online, not sent yet
        self._sent_ahead: set[int] = set()  # live rows sent before the cursor reached them
        self._acked: list[int] = []  # acknowledged, not deleted yet
        self._retry_at: float | None = None
        self.delivered = 0
        self.refused = 0

    @property
    def in_flight(self) -> int:
        """Rows handed to paho and not acknowledged yet."""
        return len(self._in_flight)

    @property
    def pending_deletes(self) -> int:
        """Acknowledged rows still in the outbox (deleted on the next :meth:`flush`)."""
        return len(self._acked)

    def stored(self, rows: list[tuple[int, bytes]], online: bool) -> None:
        """Check-ins were committed; send them now, ahead of any backlog, if the link is up."""
        if online and len(self._live) < LIVE_LIMIT:
            self._live.extend(rows)
        self.pump()

    def pump(self) -> None:
        """Hand paho the next rows, up to the in-flight window: live ones first."""
        if not self._link.connected:
            return
        if self._retry_at is not None:
            if time.monotonic() < self._retry_at:
                return
            self._retry_at = None
        while self._live and len(self._in_flight) < self._window:
            row_id, payload = self._live[0]
            if not self._send(row_id, payload):
                return
            del self._live[0]
            if row_id > self._cursor:
                self._sent_ahead.add(row_id)
        self._pump_backlog()

    def _pump_backlog(self) -> None:
        room = self._window - len(self._in_flight)
        if self._in_flight and room < self._refill_at:
            return  # refill in batches: one query for many rows, not one per PUBACK
        # Rows in the outbox are in flight, acknowledged, or not sent yet: nothing to
        # read when none is unsent (the usual case on every tick).
        while room > 0 and (self._outbox.depth - len(self._in_flight) - len(self._acked)
                            - len(self._live) > 0):
            rows = self._outbox.after(self._cursor, room + len(self._sent_ahead))
            if not rows:
                return
            for row_id, payload in rows:
                self._cursor = row_id
                if row_id in self._sent_ahead:
                    self._sent_ahead.discard(row_id)
                    continue
                if room == 0 or not self._send(row_id, protocol.mark_replayed(payload)):
                    self._cursor = row_id - 1
                    return
                room -= 1

    def _send(self, row_id: int, body: bytes) -> bool:
        try:
            mid = self._link.publish(self._link.topics.checkin, body, qos=1)
        except LinkError as exc:
            log.warning("check-in stays in the outbox: %s", exc)
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            return False
        self._in_flight[mid] = row_id
        return True

    def acked(self, mid: int, ok: bool, reason: str) -> None:
        """The broker answered message ``mid``: note its row for deletion, or offer it again."""
        row_id = self._in_flight.pop(mid, None)
        if row_id is None:
            return  # status/state messages, not outbox rows
        if ok:
            self._acked.append(row_id)
            self.delivered += 1
        else:
            # Keep the row; rewind so it (and everything after it) goes again, in order.
            self.refused += 1
            if self._retry_at is None:  # once per round, not once per row in the window
                log.error("broker did not deliver a check-in (%s); will retry in %g s",
                          reason, RETRY_AFTER_S)
            self._cursor = min(self._cursor, row_id - 1)
            self._sent_ahead = {row for row in self._sent_ahead if row < row_id}
            self._retry_at = time.monotonic() + RETRY_AFTER_S

    def flush(self) -> None:
        """Delete the acknowledged rows in one transaction, then refill the window.

        Raises :class:`~kiosk.store.outbox.OutboxError` when the disk refuses the delete; the
        rows stay noted and the delete is tried again on the next flush.
        """
        if self._acked:
            self._outbox.remove(self._acked)
            self._sent_ahead.difference_update(self._acked)
            self._acked.clear()
        self.pump()
