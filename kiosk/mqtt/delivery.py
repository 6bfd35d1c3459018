"""Delivery policy: when check-ins are committed, when acknowledged rows are deleted, what
happens while storage is in trouble, and when a silent backend is a problem.

A check-in is committed to the outbox before anything tells the customer "checked
in" (:meth:`Delivery.record`); only then is it handed to the publisher. Rows the
backend acknowledged are deleted in batches — a full batch, a tick, or once nothing
else is in flight — because one transaction for many rows is what keeps a rush
cheap on an SD card. When the disk refuses a commit or a delete, that is the
kiosk's *storage trouble*: reported at once (the idle screen becomes "out of
service", the retained state ``degraded``) and re-tried every few seconds until
the disk works again. A backend that leaves sent check-ins unacknowledged for
longer than ``outbox.backend_alarm_s``, or that answers without acknowledging
(a backend written before acknowledgements), is reported the same way: the
rows stay, and staff see why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from kiosk.counter.checkin import CheckIn
from kiosk.counter.events import Acked, Reply
from kiosk.mqtt import protocol
from kiosk.mqtt.publisher import Ack, Publisher
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
"""``on_trouble(text)`` when storage (or the backend) fails, ``None`` when it works again."""


class Delivery:
    """Outbox and publisher as one policy. Called only from the controller thread."""

    def __init__(self, outbox: Outbox, publisher: Publisher, cooldown_s: float,
                 on_trouble: OnTrouble, backend_alarm_s: float,
                 on_backend: OnTrouble) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self._cooldown_s = cooldown_s
        self._on_trouble = on_trouble
        self._backend_alarm_s = backend_alarm_s
        self._on_backend = on_backend
        self.trouble: str | None = None
        """What is wrong with storage right now, or None."""
        self.backend_trouble: str | None = None
        """What is wrong with the backend's acknowledgements right now, or None."""
        self.replies_unacknowledged = 0
        """Replies that acknowledged nothing: a backend that predates acknowledgements."""
        self._next_check = 0.0
        self.checkins_recorded = 0
        self.visits_refused = 0

    def retune(self, cooldown_s: float, backend_alarm_s: float) -> None:
        """Staff's new cooldown (how long check-in times are kept) and backend alarm."""
        self._cooldown_s, self._backend_alarm_s = cooldown_s, backend_alarm_s

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
        self.publisher.stored([(row, c.event_id, payload) for row, c, payload
                               in zip(rows, checkins, payloads, strict=True)], online=online)
        return None

    def acked(self, acks: Iterable[Acked]) -> None:
        """The broker answered these messages (a drain's PUBACKs come in one go)."""
        for ack in acks:
            self.publisher.acked(ack.mid, ack.ok, ack.reason)

    def answered(self, replies: Iterable[Reply]) -> set[str]:
        """The backend answered: delete the rows it acknowledged. Returns the event ids that
        were this run's rows waiting for it (their replies are only acknowledgements unless
        the controller still shows them)."""
        acks: list[Ack] = []
        for reply in replies:
            if reply.ack:
                acks.append((reply.event_id, reply.member_id, protocol.Ack(reply.ack),
                             reply.reason))
            else:
                self.replies_unacknowledged += 1
        rows = self.publisher.answered(acks) if acks else set()
        # Only an answer to one of this run's check-ins is surely the backend's: anyone on an
        # open broker could say "batches" to a kiosk whose backend takes none.
        if any(reply.batches and reply.event_id in rows for reply in replies):
            self.publisher.takes_batches()
        return rows

    def check_backend(self, now: float, online: bool) -> None:
        """Report (or clear) a backend that does not acknowledge: silent for longer than
        ``backend_alarm_s`` with rows sent, or answering without acknowledgements."""
        text: str | None = None
        silent = self.publisher.silent_for(now)
        if online and self.replies_unacknowledged and not self.publisher.delivered:
            text = ("backend: answers without acknowledging check-ins (it needs the reply's "
                    "\"ack\" field); nothing is deleted")
        elif online and silent > self._backend_alarm_s:
            # In whole minutes: the retained state is republished only when the text changes.
            text = ("backend: has not acknowledged check-ins for "
                    + (f"{silent // 60:.0f} min" if silent >= 60
                       else f"over {self._backend_alarm_s:.0f} s"))
        if (text is None) != (self.backend_trouble is None):
            if text:
                log.error("%s", text)
            else:
                log.info("the backend acknowledges check-ins again")
            self._on_backend(text)
        elif text is not None and text != self.backend_trouble:
            self._on_backend(text)  # the count and the minutes move on
        self.backend_trouble = text

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
