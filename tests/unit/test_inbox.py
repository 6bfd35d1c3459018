"""The controller thread's inbox, directly: lanes, bounds and counters, link events never
dropped, scans and messages taking turns, a rush of scans or acknowledgements in one go."""

from __future__ import annotations

import threading

from kiosk.counter.events import (
    Acked,
    CodeRead,
    DeviceProblem,
    LinkDown,
    LinkUp,
    Reply,
    StaffMessage,
)
from kiosk.counter.members import MemberStatus
from kiosk.daemon.inbox import Inbox

STATUS = MemberStatus("X", 1, "Gold", 1, 0.5)


def _scan(n: int) -> CodeRead:
    return CodeRead(f"LOY-M{n:04d}", "serial", float(n))


def _reply(n: int) -> Reply:
    return Reply(f"evt-{n}", "LOY-X0001", STATUS)


def _drain(inbox: Inbox) -> list:
    taken = []
    while (event := inbox.get(0)) is not None:
        taken.append(event)
    return taken


def test_a_full_scan_lane_drops_and_counts_scans_only():
    inbox = Inbox(scan_lane=3, message_lane=3)
    for n in range(5):
        inbox.put(_scan(n))
    inbox.put(_reply(0))
    assert (inbox.dropped_scans, inbox.dropped_messages, len(inbox)) == (2, 0, 4)
    assert [event for event in _drain(inbox) if isinstance(event, CodeRead)] == [
        _scan(0), _scan(1), _scan(2)]  # the first ones kept, in order


def test_a_message_flood_is_counted_and_never_drops_a_link_event_or_a_scan():
    inbox = Inbox(scan_lane=3, message_lane=3, reply_lane=3)
    for n in range(100):
        inbox.put(_reply(n))
        inbox.put(StaffMessage("loyalty/s/k/cmd/ping", b"{}", False))
    link_events = [Acked(n) for n in range(50)] + [LinkDown("gone"), LinkUp(),
                                                   DeviceProblem("camera", "lost")]
    for event in link_events:
        inbox.put(event)
    inbox.put(_scan(1))
    assert inbox.dropped_messages == 2 * 97 and inbox.dropped_scans == 0
    taken = _drain(inbox)
    assert taken[:len(link_events)] == link_events  # all of them, first, in order
    assert _scan(1) in taken


def test_scans_replies_and_staff_messages_take_turns():
    inbox = Inbox()
    staff = StaffMessage("loyalty/s/k/cmd/ping", b"{}", False)
    for n in range(2):
        inbox.put(_reply(n))
        inbox.put(staff)
    for n in range(2):
        inbox.put(_scan(n))
    assert _drain(inbox) == [_scan(0), _reply(0), staff, _scan(1), _reply(1), staff]


def test_a_drains_replies_are_taken_in_one_go():
    inbox = Inbox()
    for n in range(3):
        inbox.put(_reply(n))
    inbox.put(_scan(0))
    assert inbox.pending_replies() == [_reply(0), _reply(1), _reply(2)]
    assert _drain(inbox) == [_scan(0)]


def test_a_link_event_goes_ahead_of_waiting_scans_and_messages():
    inbox = Inbox()
    inbox.put(_scan(0))
    inbox.put(_reply(0))
    inbox.put(Acked(7))
    assert inbox.get(0) == Acked(7)


def test_pending_scans_takes_every_waiting_scan_and_leaves_the_rest():
    inbox = Inbox()
    for n in range(4):
        inbox.put(_scan(n))
    inbox.put(_reply(0))
    inbox.put(LinkUp())
    assert inbox.pending_scans() == [_scan(n) for n in range(4)]
    assert inbox.pending_scans() == []
    assert _drain(inbox) == [LinkUp(), _reply(0)]


def test_pending_acks_takes_the_acks_at_the_head_and_keeps_a_disconnect_in_its_place():
    inbox = Inbox()
    for event in (Acked(1), Acked(2, ok=False, reason="Not authorized"), LinkDown("gone"),
                  Acked(3)):
        inbox.put(event)
    assert inbox.pending_acks() == [Acked(1), Acked(2, ok=False, reason="Not authorized")]
    assert inbox.pending_acks() == []  # the disconnect is next: handled on its own
    assert _drain(inbox) == [LinkDown("gone"), Acked(3)]


def test_get_waits_for_an_event_from_another_thread_and_times_out_empty():
    inbox = Inbox()
    assert inbox.get(0.05) is None
    threading.Timer(0.05, inbox.put, [LinkUp()]).start()
    assert inbox.get(5) == LinkUp()
