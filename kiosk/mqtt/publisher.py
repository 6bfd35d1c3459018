"""Moves check-ins from the outbox to the backend, deleting each once the backend has it.

**Two acknowledgements.** The broker's PUBACK only says the broker took a message:
it frees a slot in the publish window (at most ``window`` messages in flight, which
bounds memory), nothing more. A row is deleted only when the *backend* acknowledges
it — credited, a duplicate, or refused for good — in its reply, keyed by
``event_id`` and sent after its commit. A broker that crashes without persistence,
loses its queue, or drops messages because a backend's queue overflowed therefore
loses nothing: what the backend never acknowledged is still in the outbox.

**Sending again.** Rows sent and not acknowledged by the backend within
``ack_timeout_s`` are sent again, from the oldest, in scan order, with the timeout
doubling each time nothing came back (up to :data:`MAX_ACK_TIMEOUT_S`) and starting
over at the first acknowledgement: a backend that is away is not flooded, and one
that comes back gets the rest at once. At most :data:`ACK_WINDOW` backlog rows wait
for the backend at a time. The backend deduplicates on ``event_id``, so delivery is
at least once and crediting exactly once.

**Order and the backlog.** A check-in scanned while the link is up is *live*:
it is sent at once, ahead of any backlog, so the customer at the counter gets
the answer within seconds even while thousands of visits from an outage are
being replayed. The backlog (rows stored while offline, left from an earlier
run, or sent again) goes out in the order it was scanned, marked
``"replayed": true``, in the window's remaining room. Within each of the two
streams the order is the scan order; ``boot_id`` + ``seq`` give the backend the
total order.

**Batches.** Acknowledged rows are deleted in one transaction (:meth:`flush`),
and the backlog refills the window a quarter of it at a time: one query for many
rows, not one per acknowledgement.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

from kiosk.mqtt import protocol
from kiosk.mqtt.link import Link, LinkError
from kiosk.store.outbox import Outbox, Row

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0
"""A row the broker refused, or gave to no subscriber, is offered again after this long."""
LIVE_LIMIT = 1000
"""Live rows kept in memory at most; beyond that they wait in the backlog like any other."""
ACK_WINDOW = 2000
"""Backlog rows sent and waiting for the backend's acknowledgement at most (live ones come on
top): bounds memory and what a kiosk puts in the broker's queue while the backend is away."""
MAX_ACK_TIMEOUT_S = 300.0
"""The longest wait for an acknowledgement before sending again (after doubling)."""

Ack = tuple[str, str, protocol.Ack, str]
"""``(event_id, member_id, ack, reason)`` of one acknowledgement from the backend."""


class Publisher:
    """Outbox -> MQTT pump. Called only from the controller thread."""

    def __init__(self, outbox: Outbox, link: Link, window: int, ack_timeout_s: float) -> None:
        self._outbox = outbox
        self._link = link
        self._window = window
        self._refill_at = max(1, window // 4)
        self._ack_timeout_s = ack_timeout_s
        self._wait_s = ack_timeout_s  # doubles while the backend stays silent
        self._in_flight: dict[int, tuple[int, str]] = {}  # paho mid -> (row id, event id)
        # event id -> (row id, sent at, member id), oldest send first
        self._awaiting: dict[str, tuple[int, float, str]] = {}
        self._cursor = 0  # backlog: the highest row id handed to paho in id order
        self._live: deque[Row] = deque()  # stored while online, not sent yet
        self._sent_ahead: set[int] = set()  # live rows sent before the cursor reached them
        self._acked: set[int] = set()  # acknowledged by the backend, not deleted yet
        self._acked_unknown: dict[str, str] = {}  # event id -> member: sent by an earlier run
        self._retry_at: float | None = None
        self._silent_since: float | None = None  # waiting for the backend, nothing heard
        self.published = 0
        """Rows the broker took (PUBACK)."""
        self.delivered = 0
        """Rows the backend acknowledged as credited or duplicate (deleted)."""
        self.refused = 0
        """Sends the broker refused or routed to nobody (offered again)."""
        self.backend_refused = 0
        """Rows the backend refused for good (deleted, with the reason logged)."""
        self.resent = 0
        """Rows sent again because the backend did not acknowledge them in time."""
        self.acks_refused = 0
        """Acknowledgements naming another member than their check-in's: deleted nothing."""

    @property
    def in_flight(self) -> int:
        """Rows handed to paho and not acknowledged by the broker yet."""
        return len(self._in_flight)

    @property
    def awaiting(self) -> int:
        """Rows sent and not acknowledged by the backend yet."""
        return len(self._awaiting)

    @property
    def pending_deletes(self) -> int:
        """Acknowledged rows still in the outbox (deleted on the next :meth:`flush`)."""
        return len(self._acked) + len(self._acked_unknown)

    @property
    def unsent(self) -> int:
        """Rows in the outbox this run has not sent (or must send again)."""
        return max(0, self._outbox.depth - len(self._awaiting) - self.pending_deletes)

    def silent_for(self, now: float) -> float:
        """Seconds the backend has left sent rows unacknowledged (0 when nothing waits)."""
        if self._silent_since is None or not self._outbox.depth:
            return 0.0
        return now - self._silent_since

    def oldest_awaiting_row(self) -> int | None:
        """The row id of the oldest check-in waiting for the backend, if any."""
        return min((row for row, _, _ in self._awaiting.values()), default=None)

    def first_unsent_row(self) -> int | None:
        """The row id of the oldest check-in not sent yet, if any (for its age in health)."""
        if not self.unsent:
            return None
        skip = {row for row, _, _ in self._awaiting.values()} | self._acked | self._sent_ahead
        for row_id, _event_id, _payload in self._outbox.after(self._cursor, len(skip) + 1):
            if row_id not in skip:
                return row_id
        return self._live[0][0] if self._live else None

    def stored(self, rows: list[Row], online: bool) -> None:
        """Check-ins were committed; send them now, ahead of any backlog, if the link is up."""
        if online and len(self._live) < LIVE_LIMIT:
            self._live.extend(rows)
        self.pump()

    def pump(self) -> None:
        """Hand paho the next rows, up to the in-flight window: live ones first; send again
        what the backend has not acknowledged in time."""
        if not self._link.connected:
            return
        now = time.monotonic()
        if self._retry_at is not None:
            if now < self._retry_at:
                return
            self._retry_at = None
        self._send_again_if_due(now)
        while self._live and len(self._in_flight) < self._window:
            row_id, event_id, payload = self._live[0]
            if not self._send(row_id, event_id, payload, now):
                return
            self._live.popleft()
            if row_id > self._cursor:
                self._sent_ahead.add(row_id)
        self._pump_backlog(now)

    def _pump_backlog(self, now: float) -> None:
        room = min(self._window - len(self._in_flight), ACK_WINDOW - len(self._awaiting))
        if self._in_flight and room < self._refill_at:
            return  # refill in batches: one query for many rows, not one per PUBACK
        # Rows in the outbox wait for the backend, are acknowledged, live, or not sent yet:
        # nothing to read when none is unsent (the usual case on every tick).
        while room > 0 and self.unsent - len(self._live) > 0:
            rows = self._outbox.after(self._cursor, room + len(self._sent_ahead))
            if not rows:
                return
            for row_id, event_id, payload in rows:
                if row_id in self._sent_ahead or row_id in self._acked:
                    self._sent_ahead.discard(row_id)
                    self._cursor = row_id
                    continue
                if event_id in self._awaiting:  # sent, the broker refused a row before it
                    self._cursor = row_id
                    continue
                if room == 0 or not self._send(row_id, event_id,
                                               protocol.mark_replayed(payload), now):
                    return
                self._cursor = row_id
                room -= 1

    def _send(self, row_id: int, event_id: str, body: bytes, now: float) -> bool:
        try:
            mid = self._link.publish(self._link.topics.checkin, body, qos=1)
        except LinkError as exc:
            log.warning("check-in stays in the outbox: %s", exc)
            self._retry_at = now + RETRY_AFTER_S
            return False
        self._in_flight[mid] = (row_id, event_id)
        self._awaiting[event_id] = (row_id, now, protocol.member_of(body))
        if self._silent_since is None:
            self._silent_since = now
        return True

    def _send_again_if_due(self, now: float) -> None:
        """The backend left the oldest sent row unacknowledged for too long: send every
        unacknowledged row again, from the oldest, and wait twice as long next time."""
        if not self._awaiting:
            return
        _row, sent_at, _member = next(iter(self._awaiting.values()))  # oldest send first
        if now - sent_at < self._wait_s:
            return
        first = min(row for row, _, _ in self._awaiting.values())
        log.warning("the backend has not acknowledged %d check-ins in %.0f s; sending them "
                    "again from the oldest", len(self._awaiting), now - sent_at)
        self.resent += len(self._awaiting)
        self._awaiting.clear()
        self._rewind(first)
        self._wait_s = min(self._wait_s * 2, MAX_ACK_TIMEOUT_S)

    def _rewind(self, first: int) -> None:
        """Send the backlog again from row ``first`` on (live rows sent ahead from it too)."""
        self._cursor = min(self._cursor, first - 1)
        self._sent_ahead = {row for row in self._sent_ahead if row < first}

    def relinked(self) -> None:
        """The link has a new MQTT client (new settings): what the old one had in flight may
        never have reached the broker, so those rows go again, in order (the backend
        deduplicates). Rows the broker took still wait for the backend."""
        if not self._in_flight:
            return
        first = min(row for row, _event in self._in_flight.values())
        for row, event_id in self._in_flight.values():
            if self._awaiting.get(event_id, (None,))[0] == row:
                del self._awaiting[event_id]
        self._in_flight.clear()
        self._rewind(first)

    def retune(self, window: int, ack_timeout_s: float) -> None:
        """Staff's new publish window (rows in flight beyond it wait for their PUBACKs) and
        wait for the backend before sending again, from the next send on."""
        self._window, self._refill_at = window, max(1, window // 4)
        self._ack_timeout_s = self._wait_s = ack_timeout_s

    def acked(self, mid: int, ok: bool, reason: str) -> None:
        """The broker answered message ``mid``: a free window slot, or a row to offer again."""
        sent = self._in_flight.pop(mid, None)
        if sent is None:
            return  # status/state messages, not outbox rows
        if ok:
            self.published += 1
            return
        row_id, event_id = sent
        # Keep the row; rewind so it (and everything after it) goes again, in order.
        self.refused += 1
        if self._retry_at is None:  # once per round, not once per row in the window
            log.error("broker did not deliver a check-in (%s); will retry in %g s",
                      reason, RETRY_AFTER_S)
        if self._awaiting.get(event_id, (None,))[0] == row_id:
            del self._awaiting[event_id]
        self._rewind(row_id)
        self._retry_at = time.monotonic() + RETRY_AFTER_S

    def answered(self, acks: Iterable[Ack]) -> set[str]:
        """The backend acknowledged these check-ins: note their rows for deletion. Returns the
        event ids that were rows of this run waiting for it.

        An acknowledgement must name the member its check-in names: one that does not is
        forged or misrouted, and deletes nothing (counted in :attr:`acks_refused`)."""
        matched: set[str] = set()
        now = time.monotonic()
        for event_id, member_id, ack, reason in acks:
            sent = self._awaiting.get(event_id)
            if sent is None:  # sent by an earlier run, or before sending again
                self._acked_unknown[event_id] = member_id  # checked against the row on flush
            elif sent[2] != member_id:
                self.acks_refused += 1
                log.warning("ignored an acknowledgement of %s naming another member", event_id)
                continue
            else:
                del self._awaiting[event_id]
                matched.add(event_id)
                self._acked.add(sent[0])
            if ack is protocol.Ack.REFUSED:
                self.backend_refused += 1
                log.error("the backend refused check-in %s for good: %s", event_id, reason)
            else:
                self.delivered += 1
        self._wait_s = self._ack_timeout_s  # it answers: send the overdue rest at once
        self._silent_since = now if self._awaiting else None
        return matched

    def flush(self) -> None:
        """Delete the acknowledged rows in one transaction, then refill the window.

        Raises :class:`~kiosk.store.outbox.OutboxError` when the disk refuses the delete; the
        rows stay noted and the delete is tried again on the next flush.
        """
        if self._acked_unknown:
            for row_id, event_id, payload in self._outbox.with_events(list(self._acked_unknown)):
                if protocol.member_of(payload) == self._acked_unknown[event_id]:
                    self._acked.add(row_id)
                else:
                    self.acks_refused += 1
            self._acked_unknown.clear()
        if self._acked:
            self._outbox.remove(sorted(self._acked))
            self._sent_ahead.difference_update(self._acked)
            self._acked.clear()
        self.pump()
