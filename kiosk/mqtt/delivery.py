"""Delivery policy: when check-ins are committed, when acknowledged rows are deleted, and what
happens while storage is in trouble.

A check-in is committed to the outbox before anything tells the customer "checked
in" (:meth:`Delivery.record`); only then is it handed to the publisher. Rows the
broker acknowledged are deleted in batches — a full batch, a tick, or once nothing
else is in flight — because one transaction for many rows is what keeps a rush
cheap on an SD card. When the disk refuses a commit or a delete, that is the
kiosk's *storage trouble*: reported at once (the idle screen becomes "out of
service", the retained state ``degraded``) and re-tried every few seconds until
the disk works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from kiosk.counter.checkin import CheckIn
from kiosk.counter.events import Acked
from kiosk.mqtt import protocol
from kiosk.mqtt.publisher import Publisher
from kiosk.store.outbox import Outbox, OutboxError, OutboxFull

log = logging.getLogger(__name__)

FLUSH_AT = 64
"""Acknowledged rows deleted in one transaction at the latest (else on the next tick, or once
nothing is in flight)."""
FORGET_EVERY = 1000
"""Check-ins between two clean-ups of the remembered check-in times (cooldown)."""
STORAGE_CHECK_S = 2.0
"""While storage is in trouble, how often to try whether it works again."""

OnTrouble = Callable[[str | None], None]
"""``on_trouble(text)`` when storage fails (``None`` when it works again)."""


class Delivery:
    """Outbox and publisher as one policy. Called only from the controller thread."""

    def __init__(self, outbox: Outbox, publisher: Publisher, cooldown_s: float,
                 on_trouble: OnTrouble) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self._cooldown_s = cooldown_s
        self._on_trouble = on_trouble
        self.trouble: str | None = None
        """What is wrong with storage right now, or None."""
        self._next_check = 0.0
        self.checkins_recorded = 0
        self.visits_refused = 0

    def record(self, checkins: list[CheckIn], online: bool) -> str | None:
        """Commit ``checkins`` durably, then send them; None on success, else why they were
        refused (nothing was stored)."""
        payloads = [protocol.encode_checkin(c) for c in checkins]
        try:
            rows = self.outbox.add_many(
                [(c.event_id, payload) for c, payload in zip(checkins, payloads, strict=True)],
                [(c.member_id, c.captured_at) for c in checkins])
        except OutboxError as exc:
            self.visits_refused += len(checkins)
            self._report(f"outbox full ({self.outbox.depth} check-ins waiting)"
                         if isinstance(exc, OutboxFull) else f"storage: {exc}")
            return str(exc)
        before, self.checkins_recorded = self.checkins_recorded, self.checkins_recorded + len(rows)
        if before // FORGET_EVERY != self.checkins_recorded // FORGET_EVERY:
            try:
                self.outbox.forget_scans_before(time.time() - self._cooldown_s)
            except OutboxError as exc:  # only housekeeping: try again a thousand visits later
                log.warning("old check-in times not cleaned up: %s", exc)
        self.publisher.stored(list(zip(rows, payloads, strict=True)), online=online)
        return None

    def acked(self, acks: Iterable[Acked]) -> None:
        """The broker answered these messages (a drain's PUBACKs come in one go)."""
        for ack in acks:
            self.publisher.acked(ack.mid, ack.ok, ack.reason)

    def turn(self, ticked: bool, more_waiting: bool) -> None:
        """After each turn of the controller loop: delete acknowledged rows in batches (a full
        batch, a tick, or when nothing else is in flight), else refill the publish window
        unless more events are waiting to be handled first."""
        pending = self.publisher.pending_deletes
        if pending and (pending >= FLUSH_AT or ticked or not self.publisher.in_flight):
            self.flush()
        elif not more_waiting:
            self.publisher.pump()

    def flush(self) -> None:
        """Delete acknowledged rows and refill the window; storage trouble if the disk refuses."""
        try:
            self.publisher.flush()
        except OutboxError as exc:
            log.error("acknowledged check-ins not deleted yet (will retry): %s", exc)
            self._report(f"storage: {exc}")

    def check_storage(self, now: float) -> None:
        """While storage is in trouble, now and then try whether it works again."""
        if self.trouble is None or now < self._next_check:
            return
        self._next_check = now + STORAGE_CHECK_S
        if self.outbox.full:
            return  # clears when delivered rows make room
        try:
            self.outbox.probe()
            self.publisher.flush()
        except OutboxError as exc:
            self._report(f"storage: {exc}")
            return
        log.info("storage works again")
        self.trouble = None
        self._on_trouble(None)

    def _report(self, text: str) -> None:
        self.trouble = text
        self._next_check = time.monotonic() + STORAGE_CHECK_S
        self._on_trouble(text)
