"""The publisher on a real outbox (SQLite in tmp_path), with a recording link in place of
the broker: order, the in-flight window, live before backlog, refusals, and deletes only on
the backend's acknowledgement (sent again, in order, when it does not come)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from kiosk.mqtt import protocol, publisher
from kiosk.mqtt.link import LinkError
from kiosk.mqtt.publisher import Publisher
from kiosk.store.db import open_db
from kiosk.store.outbox import Outbox

TOPICS = protocol.Topics("loyalty", "shop", "kiosk-1")


class RecordingLink:
    """What the publisher uses of a link: ``connected``, ``topics`` and ``publish``, which
    notes each message and hands out paho-like message ids. ``refuse`` makes publish fail
    as a link whose client is gone does."""

    def __init__(self) -> None:
        self.connected = True
        self.max_packet: int | None = None  # what the broker's CONNACK announced
        self.topics = TOPICS
        self.refuse = False
        self.sent: list[tuple[int, str, dict]] = []  # (mid, topic, payload)
        self.sizes: list[int] = []  # each payload's bytes

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        assert qos == 1 and not retain
        if self.refuse:
            raise LinkError("not connected")
        mid = len(self.sent) + 1
        self.sent.append((mid, topic, json.loads(payload)))
        self.sizes.append(len(payload))
        return mid

    def checkins(self) -> list[dict]:
        """Every check-in sent, in the order sent, batches opened."""
        return [checkin for _, topic, payload in self.sent
                for checkin in (payload["checkins"] if topic == TOPICS.checkins else [payload])]

    def members(self) -> list[str]:
        """The ``n`` of each check-in sent, in the order sent."""
        return [checkin["n"] for checkin in self.checkins()]

    def mids(self) -> list[int]:
        return [mid for mid, _, _ in self.sent]


@pytest.fixture
def outbox(tmp_path) -> Iterator[Outbox]:
    conn, _ = open_db(tmp_path / "kiosk.db")
    try:
        yield Outbox(conn, max_rows=1000)
    finally:
        conn.close()


@pytest.fixture
def link() -> RecordingLink:
    return RecordingLink()


def _store(outbox: Outbox, first: int, count: int) -> list[tuple[int, str, bytes]]:
    """Commit check-ins numbered ``first``...; their rows as the publisher is told of them."""
    payloads = [json.dumps({"v": 1, "n": n}).encode() for n in range(first, first + count)]
    events = [f"event-{n}" for n in range(first, first + count)]
    ids = outbox.add_many(list(zip(events, payloads, strict=True)), [])
    return list(zip(ids, events, payloads, strict=True))


def _ack_all(pump: Publisher, link: RecordingLink, ack=protocol.Ack.CREDITED) -> None:
    """The broker and then the backend acknowledge every message sent so far."""
    for mid in link.mids():
        pump.acked(mid, True, "")
    pump.answered([(f"event-{n}", "", ack, "") for n in link.members()])


@pytest.fixture(autouse=True)
def one_check_in_a_message(monkeypatch):
    """The window, order and retry tests count messages: one check-in each, as to a backend
    that takes no batches. Tests using ``batches`` send them as a kiosk does."""
    monkeypatch.setattr(publisher, "BATCH", 1)


@pytest.fixture
def batches(monkeypatch, one_check_in_a_message):
    """Batches as a kiosk sends them (up to ``protocol.MAX_CHECKINS`` a message), once the
    backend has said it takes them (:func:`_batching`)."""
    monkeypatch.setattr(publisher, "BATCH", protocol.MAX_CHECKINS)


def _batching(outbox: Outbox, link: RecordingLink, ack_timeout_s: float = 30,
              window: int = 10) -> Publisher:
    """A publisher whose backend has said, in an answer, that it takes batches."""
    pump = Publisher(outbox, link, window=window, ack_timeout_s=ack_timeout_s)
    pump.takes_batches()
    return pump


def _clock(monkeypatch) -> list[float]:
    """The publisher's monotonic clock, moved by hand."""
    clock = [1000.0]
    monkeypatch.setattr(publisher.time, "monotonic", lambda: clock[0])
    return clock


def _topics(link: RecordingLink, first: int = 0) -> list[str]:
    return [topic for _, topic, _ in link.sent[first:]]


def test_the_backlog_goes_out_in_scan_order_marked_replayed(outbox, link):
    _store(outbox, 0, 5)  # stored while offline, or left from an earlier run
    Publisher(outbox, link, window=10, ack_timeout_s=30).pump()
    assert link.members() == [0, 1, 2, 3, 4]
    assert all(topic == TOPICS.checkin for _, topic, _ in link.sent)
    assert all(payload["replayed"] is True for _, _, payload in link.sent)


def test_nothing_is_sent_while_the_link_is_down(outbox, link):
    _store(outbox, 0, 3)
    link.connected = False
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.pump()
    assert link.sent == [] and pump.in_flight == 0
    link.connected = True
    pump.pump()
    assert link.members() == [0, 1, 2]


def test_no_more_than_the_window_is_in_flight(outbox, link):
    _store(outbox, 0, 20)
    pump = Publisher(outbox, link, window=8, ack_timeout_s=30)
    pump.pump()
    assert link.members() == list(range(8)) and pump.in_flight == 8
    pump.acked(1, True, "")
    pump.pump()
    assert len(link.sent) == 8  # one slot free: the backlog refills a quarter at a time
    pump.acked(2, True, "")
    pump.flush()
    assert link.members() == list(range(10)) and pump.in_flight == 8
    assert pump.awaiting == 10  # the broker has two; the backend has acknowledged none


def test_a_live_check_in_goes_ahead_of_the_backlog_and_is_not_sent_twice(outbox, link):
    _store(outbox, 0, 30)
    pump = Publisher(outbox, link, window=4, ack_timeout_s=30)
    pump.pump()
    assert link.members() == [0, 1, 2, 3]
    live = _store(outbox, 100, 1)  # a customer at the counter while the backlog drains
    pump.stored(live, online=True)
    _ack_all(pump, link)
    pump.flush()
    assert link.members()[4] == 100
    assert "replayed" not in link.sent[4][2]  # sent live
    while pump.in_flight:  # drain everything
        _ack_all(pump, link)
        pump.flush()
    assert sorted(link.members()) == [*range(30), 100]  # each exactly once
    assert outbox.depth == 0


def test_a_check_in_stored_offline_waits_for_the_backlog_order(outbox, link):
    _store(outbox, 0, 2)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.stored(_store(outbox, 2, 1), online=False)
    assert link.members() == [0, 1, 2]
    assert all(payload["replayed"] for _, _, payload in link.sent)


def test_a_row_is_deleted_only_when_the_backend_acknowledged_it_and_only_on_flush(outbox, link):
    _store(outbox, 0, 3)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.pump()
    for mid in link.mids():
        pump.acked(mid, True, "")
    pump.flush()
    assert (pump.published, pump.delivered, outbox.depth) == (3, 0, 3)  # PUBACK: not enough
    assert (pump.in_flight, pump.awaiting) == (0, 3)
    _ack_all(pump, link)
    assert (pump.delivered, pump.pending_deletes, outbox.depth) == (3, 3, 3)
    pump.flush()
    assert (pump.pending_deletes, outbox.depth, pump.awaiting) == (0, 0, 0)


def test_unacknowledged_rows_go_again_in_order_with_a_growing_wait(outbox, link, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(publisher.time, "monotonic", lambda: clock[0])
    _store(outbox, 0, 4)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=5)
    pump.pump()
    for mid in link.mids():
        pump.acked(mid, True, "")  # the broker has them; a broker crash or overflow loses them
    pump.answered([("event-1", "", protocol.Ack.CREDITED, "")])
    pump.flush()
    clock[0] += 4.9
    pump.pump()
    assert link.members() == [0, 1, 2, 3]  # not yet
    clock[0] += 0.2
    pump.pump()
    assert link.members()[4:] == [0, 2, 3]  # the unacknowledged ones, oldest first, once
    assert all(payload["replayed"] for _, _, payload in link.sent[4:])
    assert pump.resent == 3 and outbox.depth == 3
    clock[0] += 9.9  # the wait doubled: 10 s now
    pump.pump()
    assert len(link.sent) == 7
    clock[0] += 0.2
    pump.pump()
    assert link.members()[7:] == [0, 2, 3]
    pump.answered([("event-0", "", protocol.Ack.DUPLICATE, "")])  # it answers: back to 5 s
    clock[0] += 5.1
    pump.pump()
    assert link.members()[10:] == [2, 3]
    pump.answered([(f"event-{n}", "", protocol.Ack.DUPLICATE, "") for n in (2, 3)])
    pump.flush()
    assert outbox.depth == 0 and pump.delivered == 4


def test_an_acknowledgement_for_a_row_an_earlier_run_sent_deletes_it(outbox, link):
    _store(outbox, 0, 3)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)  # nothing sent by this run
    link.connected = False
    assert pump.answered([("event-1", "", protocol.Ack.CREDITED, ""),
                          ("event-77", "", protocol.Ack.CREDITED, "")]) == set()
    pump.flush()
    assert outbox.depth == 2
    link.connected = True
    pump.pump()
    assert link.members() == [0, 2]


def test_an_acknowledgement_naming_another_member_deletes_nothing(outbox, link):
    payload = protocol.encode_checkin(protocol.CheckIn("event-0", "kiosk-1", "b", 1, 1.0,
                                                       "LOY-ALICE01", "serial"))
    outbox.add_many([("event-0", payload), ("event-1", payload.replace(b"event-0", b"event-1"))],
                    [])
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.pump()  # event-0 sent by this run; event-1 will be "from an earlier run"
    forged = [("event-0", "LOY-MALLORY1", protocol.Ack.CREDITED, ""),
              ("event-1", "LOY-MALLORY1", protocol.Ack.REFUSED, "nope")]
    assert pump.answered(forged[:1]) == set()
    link.connected = False
    pump.answered(forged[1:])
    pump.flush()
    assert (outbox.depth, pump.acks_refused, pump.delivered) == (2, 2, 0)
    assert pump.answered([("event-0", "LOY-ALICE01", protocol.Ack.CREDITED, "")]) == {"event-0"}
    pump.answered([("event-1", "LOY-ALICE01", protocol.Ack.DUPLICATE, "")])
    pump.flush()
    assert outbox.depth == 0


def test_a_refusal_deletes_the_row_is_counted_and_holds_nothing_up(outbox, link, caplog):
    _store(outbox, 0, 3)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.pump()
    pump.answered([("event-0", "", protocol.Ack.REFUSED, "member_id: too long")])
    pump.answered([(f"event-{n}", "", protocol.Ack.CREDITED, "") for n in (1, 2)])
    pump.flush()
    assert (outbox.depth, pump.backend_refused, pump.delivered) == (0, 1, 2)
    assert "refused check-in event-0 for good: member_id: too long" in caplog.text


def test_no_more_than_the_ack_window_waits_for_the_backend(outbox, link, monkeypatch):
    monkeypatch.setattr(publisher, "ACK_WINDOW", 6)
    _store(outbox, 0, 10)
    pump = Publisher(outbox, link, window=4, ack_timeout_s=30)
    pump.pump()
    for _ in range(3):
        for mid in link.mids():
            pump.acked(mid, True, "")
        pump.flush()
    assert (len(link.sent), pump.awaiting, pump.unsent) == (6, 6, 4)
    pump.answered([("event-0", "", protocol.Ack.CREDITED, "")])
    pump.flush()
    assert link.members() == [0, 1, 2, 3, 4, 5, 6]


def test_an_acknowledgement_of_another_message_is_ignored(outbox, link):
    _store(outbox, 0, 1)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.pump()
    pump.acked(999, True, "")  # a status or state message: not an outbox row
    assert (pump.published, pump.in_flight, pump.pending_deletes) == (0, 1, 0)


def test_a_refused_or_unrouted_check_in_is_offered_again_in_order(outbox, link, monkeypatch):
    monkeypatch.setattr(publisher, "RETRY_AFTER_S", 0.2)
    _store(outbox, 0, 4)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.pump()
    assert link.members() == [0, 1, 2, 3]
    pump.acked(1, True, "")
    pump.acked(2, False, "No matching subscribers")
    pump.acked(3, False, "Not authorized")
    pump.acked(4, True, "")
    assert pump.refused == 2 and pump.published == 2
    pump.flush()
    assert len(link.sent) == 4  # not at once: the broker gets a moment
    time.sleep(0.25)
    pump.pump()
    assert link.members()[4:] == [1, 2]  # the refused rows again, in order, nothing else
    _ack_all(pump, link)
    pump.flush()
    assert outbox.depth == 0


def test_a_publish_the_link_cannot_take_stays_in_the_outbox_and_is_retried(outbox, link,
                                                                           monkeypatch):
    monkeypatch.setattr(publisher, "RETRY_AFTER_S", 0.2)
    _store(outbox, 0, 2)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    link.refuse = True
    pump.pump()
    assert pump.in_flight == 0 and outbox.depth == 2
    link.refuse = False
    pump.pump()
    assert link.sent == []  # waits out the retry delay
    time.sleep(0.25)
    pump.pump()
    assert link.members() == [0, 1]


def test_a_new_client_sends_again_what_the_old_one_had_in_flight(outbox, link):
    _store(outbox, 0, 4)
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.pump()
    pump.acked(1, True, "")  # the broker took row 0; rows 1-3 may never have reached it
    pump.relinked()  # staff's new broker settings: a new client, the old one's ids are void
    assert pump.in_flight == 0 and pump.awaiting == 1
    pump.pump()
    assert link.members() == [0, 1, 2, 3, 1, 2, 3]  # in order, row 0 not again
    pump.acked(2, True, "")  # a late PUBACK of the old client frees nothing of the new
    assert pump.in_flight == 3


def test_a_new_window_holds_from_the_next_send(outbox, link):
    _store(outbox, 0, 6)
    pump = Publisher(outbox, link, window=2, ack_timeout_s=30)
    pump.pump()
    assert len(link.sent) == 2
    pump.retune(window=5, ack_timeout_s=30)
    pump.pump()
    assert link.members() == [0, 1, 2, 3, 4] and pump.in_flight == 5


def test_check_ins_committed_together_go_in_one_batch_and_a_lone_one_as_it_is(outbox, link,
                                                                              batches):
    pump = _batching(outbox, link)
    pump.stored(_store(outbox, 0, 5), online=True)  # a rush: five in one commit
    pump.stored(_store(outbox, 5, 1), online=True)  # then one customer
    assert _topics(link) == [TOPICS.checkins, TOPICS.checkin]
    assert link.sent[0][2]["v"] == 1 and link.members() == [0, 1, 2, 3, 4, 5]
    assert not any("replayed" in checkin for checkin in link.checkins())  # sent live
    assert (pump.in_flight, pump.awaiting) == (2, 6)
    _ack_all(pump, link)
    pump.flush()
    assert (pump.published, pump.delivered, outbox.depth) == (6, 6, 0)


def test_a_backend_that_has_not_said_it_takes_batches_gets_one_a_message(outbox, link,
                                                                         batches):
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30)
    pump.stored(_store(outbox, 0, 3), online=True)
    assert _topics(link) == [TOPICS.checkin] * 3
    pump.takes_batches()  # its first answer says so
    pump.stored(_store(outbox, 3, 3), online=True)
    assert _topics(link, 3) == [TOPICS.checkins] and link.members() == list(range(6))


def test_a_backlog_goes_in_full_batches_in_scan_order_each_marked_replayed(outbox, link,
                                                                           batches):
    _store(outbox, 0, 2 * protocol.MAX_CHECKINS + 7)
    _batching(outbox, link).pump()
    assert [len(payload["checkins"]) for _, _, payload in link.sent] == [
        protocol.MAX_CHECKINS, protocol.MAX_CHECKINS, 7]
    assert link.members() == list(range(2 * protocol.MAX_CHECKINS + 7))
    assert all(checkin["replayed"] is True for checkin in link.checkins())


def test_a_batch_stays_under_the_brokers_packet_limit(outbox, link, batches):
    big = 20_000  # three of these would pass the 60,000 bytes a batch may have
    rows = outbox.add_many([(f"event-{n}", json.dumps({"v": 1, "n": n, "pad": "x" * big})
                             .encode()) for n in range(5)], [])
    assert len(rows) == 5
    _batching(outbox, link).pump()
    assert [len(payload.get("checkins", [payload])) for _, _, payload in link.sent] == [2, 2, 1]
    assert link.sent[2][1] == TOPICS.checkin  # the last alone, as it is
    assert link.members() == [0, 1, 2, 3, 4]


def test_a_batch_fits_the_packet_size_the_broker_announced(outbox, link, batches):
    link.max_packet = 2048  # mosquitto disconnects a client that sends more
    outbox.add_many([(f"event-{n}", json.dumps({"v": 1, "n": n, "pad": "x" * 200}).encode())
                     for n in range(40)], [])
    _batching(outbox, link).pump()
    assert len(link.sent) > 1 and max(link.sizes) <= 2048 - protocol.PACKET_ROOM
    assert link.members() == list(range(40))


def test_a_batch_nobody_takes_goes_again_at_once_one_a_message_and_batches_resume(
        outbox, link, batches, monkeypatch, caplog):
    clock = _clock(monkeypatch)
    pump = _batching(outbox, link, ack_timeout_s=10_000)
    pump.stored(_store(outbox, 0, 3), online=True)
    pump.acked(1, False, "No matching subscribers")  # a backend gone back to singles
    assert (pump.batches_unrouted, pump.refused, pump.awaiting) == (1, 0, 0)
    pump.pump()  # at once: no retry delay for a batch
    assert _topics(link, 1) == [TOPICS.checkin] * 3 and link.members()[3:] == [0, 1, 2]
    assert "did not deliver a batch of check-ins (No matching subscribers)" in caplog.text
    pump.stored(_store(outbox, 3, 2), online=True)  # singles for a while
    assert link.members()[6:] == [3, 4] and len(link.sent) == 6
    clock[0] += publisher.SINGLES_FOR_S
    pump.stored(_store(outbox, 5, 2), online=True)  # then a batch is tried again
    assert link.sent[-1][1] == TOPICS.checkins and link.members()[-2:] == [5, 6]
    pump.acked(link.mids()[-1], False, "No matching subscribers")  # and fails again:
    pump.pump()  # (the controller pumps after the turn that took the PUBACK)
    clock[0] += publisher.SINGLES_FOR_S  # singles for twice as long now
    pump.stored(_store(outbox, 7, 2), online=True)
    assert _topics(link)[-4:] == [TOPICS.checkin] * 4 and link.members()[-4:] == [5, 6, 7, 8]
    for mid in link.mids():
        pump.acked(mid, True, "")
    pump.answered([(f"event-{n}", "", protocol.Ack.CREDITED, "") for n in range(9)])
    pump.flush()
    assert (outbox.depth, pump.delivered, pump.batches_unrouted) == (0, 9, 2)


def test_a_batch_nobody_takes_goes_again_as_it_was_sent_ahead_of_later_customers(
        outbox, link, batches):
    pump = _batching(outbox, link, window=2)
    pump.stored(_store(outbox, 0, 3), online=True)  # live, in one batch
    pump.stored(_store(outbox, 3, 2), online=True)  # the next commit, in another
    pump.acked(1, False, "No matching subscribers")
    pump.stored(_store(outbox, 5, 1), online=True)  # a customer after the PUBACK
    pump.acked(2, True, "")  # (the window of two is full until now)
    pump.pump()
    for mid in link.mids()[2:]:
        pump.acked(mid, True, "")
    pump.pump()
    assert link.members()[5:] == [0, 1, 2, 5]  # the failed batch first, in scan order
    assert not any("replayed" in checkin for checkin in link.checkins())  # all still live


class _Counter:
    """Customers committed to one publisher, and the backend's answers to them."""

    def __init__(self, pump: Publisher, outbox: Outbox, link: RecordingLink) -> None:
        self.pump, self.outbox, self.link = pump, outbox, link
        self.stored = 0

    def commit(self, count: int) -> str:
        """Check-ins committed together, and the broker's PUBACKs; the topic they went on."""
        before, first = len(self.link.sent), self.stored
        self.pump.stored(_store(self.outbox, first, count), online=True)
        self.stored += count
        for mid in self.link.mids()[before:]:
            self.pump.acked(mid, True, "")
        return next(topic for _, topic, payload in self.link.sent[before:]
                    if first in [c["n"] for c in payload.get("checkins", [payload])])

    def answer(self, *members: int) -> None:
        """The backend answers these (all that wait, when none are named)."""
        waiting = [n for n in range(self.stored) if f"event-{n}" in self.pump._awaiting]
        self.pump.answered([(f"event-{n}", "", protocol.Ack.CREDITED, "")
                            for n in (members or waiting)])
        for mid in self.link.mids():
            self.pump.acked(mid, True, "")
        self.pump.flush()


def test_a_batch_the_backend_leaves_unanswered_goes_again_one_a_message_pausing_longer(
        outbox, link, batches, monkeypatch, caplog):
    """The broker took the batch (PUBACK) and no backend received it, while the backend
    answers single check-ins: its ACL does not let it read ``evt/checkins`` and another
    client listens there. Sent again as a batch, it would never be answered."""
    clock = _clock(monkeypatch)
    counter = _Counter(_batching(outbox, link, ack_timeout_s=5), outbox, link)
    for pause in (publisher.SINGLES_FOR_S, 2 * publisher.SINGLES_FOR_S,
                  4 * publisher.SINGLES_FOR_S):
        assert counter.commit(3) == TOPICS.checkins
        clock[0] += 0.1
        assert counter.commit(1) == TOPICS.checkin  # a lone customer after it ...
        counter.answer(counter.stored - 1)  # ... is answered; the batch is not
        clock[0] += 5.1
        counter.pump.pump()
        assert _topics(link)[-3:] == [TOPICS.checkin] * 3  # one a message, from the oldest
        counter.answer()
        failed_at = clock[0]
        clock[0] = failed_at + pause - 1
        assert counter.commit(2) == TOPICS.checkin  # still one a message
        counter.answer()
        clock[0] = failed_at + pause + 0.1
    assert "although it answered others" in caplog.text
    assert counter.commit(2) == TOPICS.checkins
    counter.answer()  # a batch answered: batches work, so after the next failure ...
    counter.pump.stored(_store(outbox, counter.stored, 2), online=True)
    counter.stored += 2
    counter.pump.acked(link.mids()[-1], False, "No matching subscribers")
    counter.pump.pump()
    counter.answer()
    clock[0] += publisher.SINGLES_FOR_S + 0.1  # ... the pause is short again
    assert counter.commit(2) == TOPICS.checkins
    assert counter.pump.batches_unrouted == 1 and outbox.depth == 2


def test_a_silent_backend_is_no_reason_to_pause_batches_longer(outbox, link, batches,
                                                               monkeypatch):
    """A backend that is down answers nothing at all: what waits goes again one a message (in
    case batches were the trouble), for the shortest pause each time, not for an hour."""
    clock = _clock(monkeypatch)
    counter = _Counter(_batching(outbox, link, ack_timeout_s=5), outbox, link)
    for _ in range(4):
        assert counter.commit(3) == TOPICS.checkins
        clock[0] += 300.1  # past any doubled acknowledgement wait
        before = len(link.sent)
        counter.pump.pump()  # sent again one a message; the backend is still away
        assert set(_topics(link, before)) == {TOPICS.checkin}
        for mid in link.mids():
            counter.pump.acked(mid, True, "")
        clock[0] += publisher.SINGLES_FOR_S + 0.1
    counter.answer()  # it is back
    assert counter.commit(2) == TOPICS.checkins


def test_batches_refused_together_are_one_failure(outbox, link, batches, monkeypatch):
    clock = _clock(monkeypatch)
    _store(outbox, 0, 4 * protocol.MAX_CHECKINS)  # a backlog: four full batches in flight
    pump = _batching(outbox, link)
    pump.pump()
    assert len(link.sent) == 4
    for mid in link.mids():
        pump.acked(mid, False, "No matching subscribers")
    assert pump.batches_unrouted == 4
    clock[0] += publisher.SINGLES_FOR_S + 0.1  # one failure: the first pause, not 2**4 of it
    pump.stored(_store(outbox, 4 * protocol.MAX_CHECKINS, 2), online=True)
    assert link.sent[-1][1] == TOPICS.checkins


def test_a_backlog_batch_nobody_takes_goes_again_from_the_backlog_marked_replayed(
        outbox, link, batches):
    _store(outbox, 0, 3)
    pump = _batching(outbox, link)
    pump.pump()
    pump.stored(_store(outbox, 3, 1), online=True)  # a customer meanwhile
    pump.acked(1, False, "No matching subscribers")
    pump.pump()
    assert link.members() == [0, 1, 2, 3, 0, 1, 2]  # the customer first, then the backlog
    assert all(checkin["replayed"] for checkin in link.checkins()[4:])
    assert _topics(link, 2) == [TOPICS.checkin] * 3


def test_the_backlog_waits_for_room_for_a_few_rows_and_then_reads_them_in_one_go(
        outbox, link, batches, monkeypatch):
    monkeypatch.setattr(publisher, "ACK_WINDOW", 100)
    _store(outbox, 0, 160)
    pump = _batching(outbox, link)
    pump.pump()
    assert link.members() == list(range(100))  # the backend's window is full
    pump.answered([(f"event-{n}", "", protocol.Ack.CREDITED, "") for n in range(10)])
    pump.flush()
    assert len(link.members()) == 100  # ten rows free: fewer than REFILL_ROWS, wait
    pump.answered([(f"event-{n}", "", protocol.Ack.CREDITED, "") for n in range(10, 50)])
    pump.flush()
    assert link.members()[100:] == list(range(100, 150))  # fifty free: one batch of fifty
    assert link.sent[-1][1] == TOPICS.checkins


def test_a_new_client_sends_a_batch_in_flight_again(outbox, link, batches):
    _store(outbox, 0, 4)
    pump = _batching(outbox, link)
    pump.pump()
    pump.relinked()
    assert (pump.in_flight, pump.awaiting) == (0, 0)
    pump.pump()
    assert link.members() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_a_restarted_kiosk_remembers_that_its_backend_takes_batches(outbox, link, batches,
                                                                     tmp_path):
    marker = (tmp_path / "backend-batches", b'["broker-1", 8883, "loyalty"]')
    first = Publisher(outbox, link, window=10, ack_timeout_s=30, batches_marker=marker)
    first.stored(_store(outbox, 0, 2), online=True)
    assert _topics(link) == [TOPICS.checkin] * 2 and not marker[0].exists()
    first.takes_batches()  # its first answer
    assert marker[0].read_bytes() == marker[1]
    _store(outbox, 2, 3)  # a backlog left for the next run
    again = RecordingLink()
    Publisher(outbox, again, window=10, ack_timeout_s=30, batches_marker=marker).pump()
    assert _topics(again) == [TOPICS.checkins] and again.members() == [0, 1, 2, 3, 4]
    moved = RecordingLink()  # the same kiosk pointed at another broker: nothing is known
    Publisher(outbox, moved, window=10, ack_timeout_s=30,
              batches_marker=(marker[0], b'["broker-2", 8883, "loyalty"]')).pump()
    assert _topics(moved) == [TOPICS.checkin] * 5


def test_a_marker_the_disk_refuses_leaves_batches_on_for_this_run(outbox, link, batches,
                                                                  tmp_path, caplog):
    marker = (tmp_path / "no-such-folder" / "sub" / "backend-batches", b"x")
    (tmp_path / "no-such-folder").write_text("a file where a folder should be")
    pump = Publisher(outbox, link, window=10, ack_timeout_s=30, batches_marker=marker)
    pump.takes_batches()
    assert "not remembered that the backend takes batches" in caplog.text
    pump.stored(_store(outbox, 0, 2), online=True)
    assert _topics(link) == [TOPICS.checkins]
