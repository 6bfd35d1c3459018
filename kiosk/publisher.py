"""Moves check-ins from the outbox to the broker, in order, deleting each on its PUBACK.

Each row is handed to paho once per process; paho itself re-sends unacknowledged
QoS 1 messages (same message id, DUP flag) after a reconnect. A restart starts
again from the oldest row, so delivery is at least once and the backend
deduplicates on ``event_id``. At most ``window`` rows are in flight, which
bounds memory and keeps order.
"""

from __future__ import annotations

import logging
import time

from kiosk import protocol
from kiosk.link import Link, LinkError
from kiosk.outbox import Outbox

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5.0
"""A row the broker refused (negative PUBACK) is offered again after this long."""


class Publisher:
    """Outbox -> MQTT pump. Called only from the controller thread."""

    def __init__(self, outbox: Outbox, link: Link, window: int) -> None:
        self._outbox = outbox
        self._link = link
        self._window = window
        self._in_flight: dict[int, int] = {}  # paho mid -> outbox row id
        self._sent_up_to = 0  # highest row id handed to paho
        self._live: set[int] = set()  # rows stored while online and not yet sent
        self._retry_at: float | None = None
        self.delivered = 0
        self.refused = 0

    def stored(self, row_id: int, online: bool) -> None:
        """A check-in was committed; send it now if the link is up."""
        if online:
            self._live.add(row_id)
        self.pump()

    def pump(self) -> None:
        """Hand paho the next rows, up to the in-flight window."""
        if not self._link.connected:
            return
        if self._retry_at is not None:
            if time.monotonic() < self._retry_at:
                return
            self._retry_at = None
        room = self._window - len(self._in_flight)
        # Rows in the outbox are either in flight or not sent yet: nothing to read when
        # all are in flight (the usual case on every tick).
        if room <= 0 or self._outbox.depth <= len(self._in_flight):
            return
        for row_id, payload in self._outbox.after(self._sent_up_to, room):
            live = row_id in self._live
            self._live.discard(row_id)
            body = payload if live else protocol.mark_replayed(payload)
            try:
                mid = self._link.publish(self._link.topics.checkin, body, qos=1)
            except LinkError as exc:
                log.warning("check-in stays in the outbox: %s", exc)
                self._retry_at = time.monotonic() + RETRY_AFTER_S
                return
            self._in_flight[mid] = row_id
            self._sent_up_to = row_id

    def acked(self, mid: int, ok: bool, reason: str) -> None:
        """The broker answered message ``mid``: delete its row, or offer it again later."""
        row_id = self._in_flight.pop(mid, None)
        if row_id is None:
            return  # status/state messages, not outbox rows
        if ok:
            self._outbox.remove(row_id)
            self.delivered += 1
        else:
            # Keep the row; rewind so it (and everything after it) goes again, in order.
            self.refused += 1
            log.error("broker refused a check-in (%s); will retry", reason)
            self._sent_up_to = min(self._sent_up_to, row_id - 1)
            self._retry_at = time.monotonic() + RETRY_AFTER_S
        self.pump()
