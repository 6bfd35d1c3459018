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

**Batches.** Once the backend has said in an answer that it takes batches
(``"batches":true``), check-ins ready to go together — the rows of one commit in a rush,
a backlog — go in one message on ``evt/checkins`` (up to :data:`BATCH`); a lone check-in
goes on ``evt/checkin`` as it always has, and so does everything for a backend that has
not said so. Per check-in, the broker, paho and the backend then handle a fraction of
the messages, PUBACKs and answers (docs/performance.md). The window counts messages.
A batch the broker gives to nobody or refuses (MQTT 5: a backend gone back to a version
without batches, an ACL written before them) goes again at once, one a message; a batch
the backend leaves unanswered goes again one a message after the acknowledgement
timeout. Either way check-ins then go one a message for :data:`SINGLES_FOR_S` before a
batch is tried again, twice as long after each failure (up to
:data:`MAX_SINGLES_FOR_S`), and :data:`SINGLES_FOR_S` again once a batch is answered.
Acknowledged rows are deleted in one transaction (:meth:`flush`), and the backlog
refills the window a quarter of it at a time: one query for many rows, not one per
acknowledgement.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from drivers.files import write_atomically
from kiosk.mqtt import protocol
from kiosk.mqtt.link import Link, LinkError
from kiosk.store.outbox import Outbox, Row

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0
"""A check-in sent alone that the broker refused, or gave to no subscriber, is offered again
after this long (a batch's go again at once, one a message)."""
LIVE_LIMIT = 1000
"""Live rows kept in memory at most; beyond that they wait in the backlog like any other."""
ACK_WINDOW = 2000
"""Backlog rows sent and waiting for the backend's acknowledgement at most (live ones come on
top): bounds memory and what a kiosk puts in the broker's queue while the backend is away."""
MAX_ACK_TIMEOUT_S = 300.0
"""The longest wait for an acknowledgement before sending again (after doubling)."""
BATCH = protocol.MAX_CHECKINS
"""Check-ins in one message at most, while the backend takes batches."""
REFILL_ROWS = 50
"""Backlog rows read at least when some wait for the backend: a query per answered batch, not
per answer."""
SINGLES_FOR_S = 60.0
"""After a batch failed (nobody took it, or nobody answered it), how long check-ins go one a
message before a batch is tried again; it doubles with each failure in a row."""
MAX_SINGLES_FOR_S = 3600.0
"""The longest time check-ins go one a message before a batch is tried again."""

Ack = tuple[str, str, protocol.Ack, str]
"""``(event_id, member_id, ack, reason)`` of one acknowledgement from the backend."""


class Publisher:
    """Outbox -> MQTT pump. Called only from the controller thread."""

    def __init__(self, outbox: Outbox, link: Link, window: int, ack_timeout_s: float,
                 batches_marker: tuple[Path, bytes] | None = None) -> None:
        """``batches_marker``: a file, and what it holds once the backend has said it takes
        batches (which broker it was heard on), so a restarted kiosk (after an update, or a
        power cut, with a backlog) sends batches from the start instead of one a message
        until the first answer."""
        self._outbox = outbox
        self._link = link
        self._window = window
        self._refill_at = max(1, window // 4)
        self._ack_timeout_s = ack_timeout_s
        self._wait_s = ack_timeout_s  # doubles while the backend stays silent
        # paho mid -> the rows in the message as sent, and whether they were sent live
        self._in_flight: dict[int, tuple[list[Row], bool]] = {}
        # event id -> (row id, sent at, member id), oldest send first
        self._awaiting: dict[str, tuple[int, float, str]] = {}
        self._cursor = 0  # backlog: the highest row id handed to paho in id order
        self._live: deque[Row] = deque()  # stored while online, not sent yet
        self._sent_ahead: set[int] = set()  # live rows sent before the cursor reached them
        self._acked: set[int] = set()  # acknowledged by the backend, not deleted yet
        self._acked_unknown: dict[str, str] = {}  # event id -> member: sent by an earlier run
        self._retry_at: float | None = None
        self._batches_marker = batches_marker
        self._batches = batches_marker is not None and _holds(*batches_marker)
        self._singles_until = 0.0  # monotonic: no batches before (the last one failed)
        self._singles_for = SINGLES_FOR_S  # how long the next failure keeps to singles
        self._batched: set[str] = set()  # event ids awaiting the backend, sent in a batch
        self._answered_at: float | None = None  # monotonic: the backend's last acknowledgement
        self._silent_since: float | None = None  # waiting for the backend, nothing heard
        self.published = 0
        """Rows the broker took (PUBACK)."""
        self.batches_unrouted = 0
        """Batches the broker gave to nobody or refused: their rows went again one a message
        (a batch the backend left unanswered is counted in :attr:`resent`)."""
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
        """Messages handed to paho and not acknowledged by the broker yet."""
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
        if self._live and len(self._in_flight) < self._window:
            sent = self._send_rows(list(islice(self._live, self._room(now))), now, live=True)
            for _ in range(sent):
                row_id = self._live.popleft()[0]
                if row_id > self._cursor:
                    self._sent_ahead.add(row_id)
            if self._live:
                return  # the window is full, or paho refused
        self._pump_backlog(now)

    def takes_batches(self) -> None:
        """The backend said in an answer that it takes batches of check-ins: from now on, and
        from the start of the next run (the marker file)."""
        if self._batches:
            return
        self._batches = True
        log.info("the backend takes batches of check-ins: sending what is ready together in "
                 "one message")
        if self._batches_marker is not None:
            path, identity = self._batches_marker
            try:
                write_atomically(path, lambda file: file.write(identity))
            except OSError as exc:  # only an optimisation: the next run learns it again
                log.warning("not remembered that the backend takes batches: %s", exc)

    def _per_message(self, now: float) -> int:
        """Check-ins one message takes now: a batch, or one to a backend that has not said it
        takes batches, or for a while after a batch failed."""
        return BATCH if self._batches and now >= self._singles_until else 1

    def _batch_failed(self, now: float, why: str, evidence: bool = True) -> None:
        """One check-in a message for a while. With ``evidence`` that batches are what fails
        (the broker refused one; the backend answered others but not it), twice as long
        next time; a silent backend is no such evidence. Batches in flight when the first
        failed are the same failure: they change nothing."""
        if now < self._singles_until:
            return
        log.log(logging.WARNING if evidence else logging.INFO,
                "%s: sending one check-in a message for %.0f s, then trying a batch again",
                why, self._singles_for)
        self._singles_until = now + self._singles_for
        if evidence:
            self._singles_for = min(self._singles_for * 2, MAX_SINGLES_FOR_S)

    def _room(self, now: float) -> int:
        """Rows the free part of the window takes."""
        return (self._window - len(self._in_flight)) * self._per_message(now)

    def _pump_backlog(self, now: float) -> None:
        free = self._window - len(self._in_flight)
        if self._in_flight and free < self._refill_at:
            return  # refill in batches: one query for many rows, not one per PUBACK
        room = min(self._room(now), ACK_WINDOW - len(self._awaiting))
        if self._awaiting and room < min(REFILL_ROWS, self._refill_at * self._per_message(now)):
            return  # a few rows free: wait for more, and read them in one query
        # Rows in the outbox wait for the backend, are acknowledged, live, or not sent yet:
        # nothing to read when none is unsent (the usual case on every tick).
        while room > 0 and self.unsent - len(self._live) > 0:
            rows = self._outbox.after(self._cursor, room + len(self._sent_ahead))
            if not rows:
                return
            ready: list[Row] = []
            last = rows[-1][0]
            for row_id, event_id, payload in rows:
                if (row_id in self._sent_ahead or row_id in self._acked
                        or event_id in self._awaiting):  # live, acknowledged, or still waiting
                    continue
                ready.append((row_id, event_id, protocol.mark_replayed(payload)))
                if len(ready) == room:
                    last = row_id
                    break
            sent = self._send_rows(ready, now, live=False)
            self._cursor = last if sent == len(ready) else ready[sent][0] - 1
            if self._sent_ahead:
                self._sent_ahead = {row for row in self._sent_ahead if row > self._cursor}
            if sent < len(ready):
                return  # the window is full, or paho refused
            room -= sent

    def _send_rows(self, rows: list[Row], now: float, live: bool) -> int:
        """Hand paho ``rows`` in order, as batches while the backend takes them, until the
        window is full; returns how many were handed over."""
        sent = 0
        while sent < len(rows) and len(self._in_flight) < self._window:
            count, most = 1, self._per_message(now)
            if most > 1:
                sizes = [len(body) for _, _, body in rows[sent:sent + most]]
                count = protocol.pack(sizes, most, protocol.batch_bytes(
                    protocol.CHECKIN_BATCH_LIMITS, self._link.max_packet))
            if not self._send(rows[sent:sent + count], now, live):
                break
            sent += count
        return sent

    def _send(self, rows: list[Row], now: float, live: bool) -> bool:
        """One message: a lone check-in as it is, several as a batch."""
        if len(rows) == 1:
            topic, body = self._link.topics.checkin, rows[0][2]
        else:
            topic = self._link.topics.checkins
            body = protocol.encode_checkins([payload for _, _, payload in rows])
        try:
            mid = self._link.publish(topic, body, qos=1)
        except LinkError as exc:
            log.warning("check-in stays in the outbox: %s", exc)
            self._retry_at = now + RETRY_AFTER_S
            return False
        self._in_flight[mid] = (rows, live)
        for row_id, event_id, payload in rows:
            self._awaiting[event_id] = (row_id, now, protocol.member_of(payload))
        if len(rows) > 1:
            self._batched.update(event_id for _, event_id, _ in rows)
        elif self._batched:
            self._batched.discard(rows[0][1])
        if self._silent_since is None:
            self._silent_since = now
        return True

    def _send_again_if_due(self, now: float) -> None:
        """The backend left the oldest sent row unacknowledged for too long: send every
        unacknowledged row again, from the oldest, and wait twice as long next time.

        When some of them went in a batch, they go one a message (:meth:`_batch_failed`): a
        batch the broker took and no backend received (one whose ACL does not let it read
        ``evt/checkins``, or gone back to a version without batches, while another client
        listens there) would otherwise be sent again, as a batch, for ever."""
        if not self._awaiting:
            return
        _row, sent_at, _member = next(iter(self._awaiting.values()))  # oldest send first
        if now - sent_at < self._wait_s:
            return
        first = min(row for row, _, _ in self._awaiting.values())
        batched_at = min((self._awaiting[event_id][1] for event_id in self._batched
                          if event_id in self._awaiting), default=None)
        log.warning("the backend has not acknowledged %d check-ins in %.0f s; sending them "
                    "again from the oldest", len(self._awaiting), now - sent_at)
        self.resent += len(self._awaiting)
        self._awaiting.clear()
        self._rewind(first)
        if batched_at is not None:
            self._batched.clear()
            answered_since = self._answered_at is not None and self._answered_at > batched_at
            self._batch_failed(now, "the backend did not answer check-ins sent in a batch"
                               + (" although it answered others" if answered_since else ""),
                               evidence=answered_since)
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
        rows = [row for message, _live in self._in_flight.values() for row in message]
        self._in_flight.clear()
        self._forget(rows)
        self._rewind(min(row for row, _event, _body in rows))

    def _forget(self, rows: list[Row]) -> None:
        """These rows' sends did not reach the backend: no longer awaited."""
        for row, event_id, _body in rows:
            if self._awaiting.get(event_id, (None,))[0] == row:
                del self._awaiting[event_id]
                self._batched.discard(event_id)

    def retune(self, window: int, ack_timeout_s: float) -> None:
        """Staff's new publish window (rows in flight beyond it wait for their PUBACKs) and
        wait for the backend before sending again, from the next send on."""
        self._window, self._refill_at = window, max(1, window // 4)
        self._ack_timeout_s = self._wait_s = ack_timeout_s

    def acked(self, mid: int, ok: bool, reason: str) -> None:
        """The broker answered message ``mid``: a free window slot, or rows to offer again."""
        message = self._in_flight.pop(mid, None)
        if message is None:
            return  # status/state messages, not outbox rows
        sent, live = message
        if ok:
            self.published += len(sent)
            return
        self._forget(sent)
        if len(sent) > 1:  # the backend may take no batches now (or the ACL predates them)
            self.batches_unrouted += 1
            self._batch_failed(time.monotonic(),
                               f"the broker did not deliver a batch of check-ins ({reason})")
            if live:  # at once, one a message, as sent (still live), ahead of later customers
                self._live.extendleft(reversed(sent))
            else:  # the backlog goes again from them, one a message
                self._rewind(sent[0][0])
            return
        # Keep the row; rewind so it (and everything after it) goes again, in order.
        self._rewind(sent[0][0])
        self.refused += 1
        if self._retry_at is None:  # once per round, not once per row in the window
            log.error("broker did not deliver a check-in (%s); will retry in %g s",
                      reason, RETRY_AFTER_S)
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
                if event_id in self._batched:  # batches work: a short wait after a failure
                    self._batched.discard(event_id)
                    self._singles_for = SINGLES_FOR_S
            if ack is protocol.Ack.REFUSED:
                self.backend_refused += 1
                log.error("the backend refused check-in %s for good: %s", event_id, reason)
            else:
                self.delivered += 1
        self._wait_s = self._ack_timeout_s  # it answers: send the overdue rest at once
        self._silent_since = now if self._awaiting else None
        if matched:
            self._answered_at = now
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


def _holds(path: Path, content: bytes) -> bool:
    """True when ``path`` holds exactly ``content`` (False when it is missing or unreadable)."""
    try:
        return path.read_bytes() == content
    except OSError:
        return False
