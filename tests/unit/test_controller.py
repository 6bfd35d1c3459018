"""The counter's decisions, tested directly: no threads, no broker, no hardware."""

from __future__ import annotations

import itertools

import pytest

from kiosk.counter.checkin import CheckIn
from kiosk.counter.controller import RECENT_CHECKINS, Controller, Timing
from kiosk.counter.events import (
    CodeRead,
    LinkDown,
    LinkUp,
    Record,
    RecordFailed,
    Remember,
    Reply,
    Show,
    Signal,
    Tick,
)
from kiosk.counter.members import MemberCodes, MemberStatus
from kiosk.counter.screens import Idle, NotRecorded, Sync, UnknownCard, Welcome

ALICE = "LOY-ALICE01"
KNOWN = MemberStatus("Alice", 40, "Bronze", 10, 0.8)
NEW = MemberStatus("Alice", 50, "Bronze", 50, 0.0, reward_unlocked="Free coffee")


@pytest.fixture
def controller():
    ids = (f"evt-{n}" for n in itertools.count(1))
    return Controller(MemberCodes(r"LOY-[A-Z0-9]{4,32}"), Timing(3.0, 6.0), "kiosk-1", "boot-1",
                      known={ALICE: KNOWN}, new_event_id=lambda: next(ids))


def _online(controller: Controller) -> Controller:
    controller.handle(LinkUp(), 0.0)
    return controller


def test_a_member_code_is_recorded_before_the_customer_is_told(controller):
    actions = _online(controller).handle(CodeRead(ALICE, "camera", 1000.5), 1.0)
    assert actions == [
        Record(CheckIn("evt-1", "kiosk-1", "boot-1", 1, 1000.5, ALICE, "camera")),
        Show(Welcome(KNOWN, Sync.WAITING)),
        Signal("ok"),
    ]


def test_an_unknown_card_records_nothing(controller):
    actions = _online(controller).handle(CodeRead("https://example.com", "camera", 1.0), 1.0)
    assert actions == [Show(UnknownCard("Web address")), Signal("error")]
    assert controller.seq == 0


def test_the_reply_shows_the_new_balance_and_celebrates_a_reward(controller):
    _online(controller).handle(CodeRead(ALICE, "serial", 1.0), 1.0)
    actions = controller.handle(Reply("evt-1", ALICE, NEW), 1.5)
    assert actions == [Remember(ALICE, NEW), Show(Welcome(NEW, Sync.SYNCED)), Signal("reward")]


def test_no_reply_in_time_shows_the_last_known_balance_pending_sync(controller):
    _online(controller).handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    assert controller.handle(Tick(), 3.9) == []
    assert controller.handle(Tick(), 4.0) == [Show(Welcome(KNOWN, Sync.PENDING))]


def test_offline_the_visit_is_recorded_and_shown_as_pending_at_once(controller):
    actions = controller.handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    assert isinstance(actions[0], Record)
    assert actions[1] == Show(Welcome(KNOWN, Sync.PENDING))
    assert controller.handle(Tick(), 5.0) == []  # nothing to time out


def test_a_late_reply_updates_the_cache_but_not_the_next_customers_screen(controller):
    _online(controller).handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    controller.handle(CodeRead("LOY-BOB0002", "camera", 2.0), 2.0)
    actions = controller.handle(Reply("evt-1", ALICE, NEW), 2.5)
    assert actions == [Remember(ALICE, NEW)]
    assert controller.screen == Welcome(None, Sync.WAITING)  # Bob, never seen before


def test_a_failed_commit_tells_the_customer_the_visit_was_not_recorded(controller):
    actions = _online(controller).handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    record = actions[0]
    assert controller.handle(RecordFailed(record.checkin, "outbox full"), 1.0) == [
        Show(NotRecorded("outbox full")), Signal("full")]
    assert controller.handle(Tick(), 5.0) == []  # no "pending" screen for a visit never stored


def test_the_result_returns_to_idle_and_idle_follows_the_link(controller):
    _online(controller).handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    # no reply can come now: "will sync" at once, and the result stays up
    assert controller.handle(LinkDown("gone"), 2.0) == [Show(Welcome(KNOWN, Sync.PENDING))]
    assert controller.handle(Tick(), 7.0) == [Show(Idle(online=False)), Signal("offline")]
    assert controller.handle(LinkUp(), 8.0) == [Show(Idle(online=True)), Signal("idle")]
    assert controller.handle(LinkUp(), 8.1) == []


def test_sequence_numbers_count_check_ins_of_this_boot(controller):
    seqs = [controller.handle(CodeRead(f"LOY-MEMBER{n}", "camera", 1.0), 1.0)[0].checkin.seq
            for n in range(3)]
    assert seqs == [1, 2, 3]


MALLORY = MemberStatus("Pwned!", 999_999, "Gold", 0, 1.0)


def test_a_reply_naming_another_member_is_refused(controller):
    _online(controller).handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    assert controller.handle(Reply("evt-1", "LOY-MALLORY1", MALLORY), 1.5) == []
    assert controller.screen == Welcome(KNOWN, Sync.WAITING)
    assert controller.replies_refused == 1


def test_a_reply_for_no_check_in_of_ours_is_refused_even_for_a_real_member(controller):
    _online(controller).handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    assert controller.handle(Reply("evt-guessed", ALICE, MALLORY), 1.5) == []
    assert controller.replies_refused == 1
    # the genuine reply still lands
    assert controller.handle(Reply("evt-1", ALICE, NEW), 1.6)[0] == Remember(ALICE, NEW)


def test_replies_to_check_ins_stored_offline_and_replayed_later_are_accepted(controller):
    controller.handle(CodeRead(ALICE, "camera", 1.0), 1.0)  # offline: stored, sent later
    controller.handle(Tick(), 30.0)
    _online(controller)
    assert controller.handle(Reply("evt-1", ALICE, NEW), 31.0) == [Remember(ALICE, NEW)]
    assert controller.replies_refused == 0


def test_a_reply_after_the_timeout_is_still_accepted(controller):
    _online(controller).handle(CodeRead(ALICE, "camera", 1.0), 1.0)
    controller.handle(Tick(), 4.0)  # gave up waiting: "will sync"
    assert controller.handle(Reply("evt-1", ALICE, NEW), 4.5)[0] == Remember(ALICE, NEW)


def test_a_check_in_from_before_a_restart_can_be_expected(controller):
    controller.expect_reply("evt-old", ALICE)
    assert controller.handle(Reply("evt-old", ALICE, NEW), 1.0) == [Remember(ALICE, NEW)]


def test_only_the_most_recent_check_ins_are_remembered(controller):
    for n in range(RECENT_CHECKINS + 1):
        controller.handle(CodeRead(f"LOY-MEMBER{n}", "serial", 1.0), 1.0)
    assert controller.handle(Reply("evt-1", "LOY-MEMBER0", NEW), 2.0) == []
    last = f"evt-{RECENT_CHECKINS + 1}"
    assert controller.handle(Reply(last, f"LOY-MEMBER{RECENT_CHECKINS}", NEW), 2.0) != []


def test_a_member_within_the_cooldown_is_told_and_nothing_is_recorded():
    controller = _online(Controller(
        MemberCodes(r"LOY-[A-Z0-9]{4,32}"), Timing(3.0, 6.0, cooldown_s=30.0), "kiosk-1",
        "boot-1", known={ALICE: KNOWN}, recent={ALICE: 1000.0}))  # as loaded after a restart
    assert controller.handle(CodeRead(ALICE, "camera", 1029.0), 1.0) == [
        Show(Welcome(KNOWN, Sync.ALREADY)), Signal("ok")]
    assert controller.seq == 0
    other = controller.handle(CodeRead("LOY-BOB0002", "camera", 1029.5), 1.5)
    assert isinstance(other[0], Record)  # the next member is not held up
    again = controller.handle(CodeRead(ALICE, "camera", 1030.0), 2.0)  # 30 s later: a new visit
    assert isinstance(again[0], Record)
    assert controller.handle(CodeRead(ALICE, "camera", 1031.0), 3.0)[0] == Show(
        Welcome(KNOWN, Sync.ALREADY))


def test_a_clock_that_went_back_does_not_hold_a_member_up():
    controller = _online(Controller(
        MemberCodes(r"LOY-[A-Z0-9]{4,32}"), Timing(3.0, 6.0, cooldown_s=30.0), "kiosk-1",
        "boot-1", known={}, recent={ALICE: 5000.0}))  # stored before the Pi's clock was set back
    assert isinstance(controller.handle(CodeRead(ALICE, "camera", 1000.0), 1.0)[0], Record)


def test_the_cooldown_memory_is_bounded_oldest_first():
    controller = _online(Controller(
        MemberCodes(r"LOY-[A-Z0-9]{4,32}"), Timing(3.0, 6.0, cooldown_s=30.0), "kiosk-1",
        "boot-1", known={}, max_known=3))
    for n in range(5):
        controller.handle(CodeRead(f"LOY-M{n:04d}", "camera", 1000.0 + n), 1.0)
    assert isinstance(controller.handle(CodeRead("LOY-M0000", "camera", 1006.0), 2.0)[0], Record)
    assert controller.handle(CodeRead("LOY-M0004", "camera", 1006.0), 2.0)[0] == Show(
        Welcome(None, Sync.ALREADY))


def test_a_tick_expires_the_replies_that_are_due_and_keeps_the_rest(controller):
    """Replies are awaited in deadline order and a tick walks only the due ones: in a
    rush of 600, the screen's own check-in (the last) turns pending exactly on time."""
    _online(controller)
    for n in range(600):
        controller.handle(CodeRead(f"LOY-RUSH{n:04d}", "serial", float(n)), n * 0.01)
    assert controller.handle(Tick(), 3.5) == []  # the first 51 are due, not the shown one
    assert controller.handle(Tick(), 8.98) == []
    assert controller.handle(Tick(), 8.99) == [Show(Welcome(None, Sync.PENDING))]
    accepted = controller.handle(Reply("evt-600", "LOY-RUSH0599", NEW), 9.5)
    assert Remember("LOY-RUSH0599", NEW) in accepted  # late, and still taken
