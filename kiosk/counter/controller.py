"""The counter's state machine: ``handle(event, now) -> actions``. Pure: no I/O, no threads.

It decides what happens when a code is read, a reply arrives or time passes;
``kiosk.daemon.actions`` carries the actions out in order. A ``Record``
comes before the ``Show`` that tells the customer "checked in": if the commit
fails, it feeds back ``RecordFailed`` and the rest is not shown.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.events import (
    Action,
    CodeRead,
    Cue,
    Event,
    LinkDown,
    LinkUp,
    Record,
    RecordFailed,
    Remember,
    Reply,
    ScansLost,
    Show,
    Signal,
    Tick,
)
from kiosk.counter.members import MemberCodes, MemberStatus, Refused, redact
from kiosk.counter.screens import Idle, NotRecorded, Screen, Sync, UnknownCard, Welcome

log = logging.getLogger(__name__)

RECENT_CHECKINS = 1000
"""Check-ins whose replies are still accepted: late replies and replays of offline visits."""


@dataclass(frozen=True)
class Timing:
    """How long the kiosk waits for the backend, and how long a result stays up."""

    reply_timeout_s: float
    result_screen_s: float
    cooldown_s: float = 0.0


class Controller:
    """Owns the counter's state; only ever called from the controller thread."""

    def __init__(self, codes: MemberCodes, timing: Timing, device_id: str, boot_id: str,
                 known: dict[str, MemberStatus], max_known: int = 5000,
                 new_event_id: Callable[[], str] = uuid7,
                 recent: dict[str, float] | None = None) -> None:
        self._codes = codes
        self._timing = timing
        self._device_id = device_id
        self._boot_id = boot_id
        self._known = known
        self._max_known = max_known
        self._new_event_id = new_event_id
        self.online = False
        self.seq = 0
        self.screen: Screen = Idle(online=False)
        self._showing_event: str | None = None  # event whose result is on screen
        self._screen_until: float | None = None
        self._awaiting: dict[str, tuple[str, float]] = {}  # event_id -> (member_id, deadline)
        self._checked_in = recent if recent is not None else {}  # member_id -> unix time
        self._recent: OrderedDict[str, str] = OrderedDict()  # event_id -> member_id, newest last
        self.replies_refused = 0
        """Replies for no check-in of ours, or naming another member: forged or misrouted."""
        self.scans_seen = 0
        """Codes handed up by the readers, member codes or not."""
        self.codes_refused = 0
        """Codes refused on screen: not a member code, unreadable, too long, a forged card."""
        self.repeats = 0
        """Members told "already checked in": a scan again within ``cooldown_s``."""
        self.last_scan_at: float | None = None
        """Unix time of the last code handed up (None: none since start)."""

    def retune(self, codes: MemberCodes, timing: Timing) -> None:
        """Staff's new member code formats and timings, from the next event on (a check-in
        waiting for its reply keeps the deadline it was given)."""
        self._codes, self._timing = codes, timing

    def start(self) -> list[Action]:
        """What to show at power-on."""
        return [Show(self.screen), Signal(Cue.OFFLINE)]

    def expect_reply(self, event_id: str, member_id: str) -> None:
        """Accept a reply for this check-in (also one recorded before a restart).

        Only the newest ``RECENT_CHECKINS`` are remembered, so the map stays small.
        """
        self._recent[event_id] = member_id
        self._recent.move_to_end(event_id)
        if len(self._recent) > RECENT_CHECKINS:
            self._recent.popitem(last=False)

    def remembers(self, event_id: str) -> bool:
        """True for a check-in recent enough that its reply may still be shown."""
        return event_id in self._recent

    def handle(self, event: Event, now: float) -> list[Action]:
        """React to one event; ``now`` is monotonic time in seconds."""
        match event:
            case CodeRead():
                return self._code_read(event, now)
            case Reply():
                return self._reply(event, now)
            case RecordFailed(checkin=checkin, reason=reason):
                log.error("check-in %s of %s NOT recorded: %s",
                          checkin.event_id, redact(checkin.member_id), reason)
                self._awaiting.pop(checkin.event_id, None)
                self._checked_in.pop(checkin.member_id, None)
                return [self._result(NotRecorded(reason), now, None), Signal(Cue.FULL)]
            case ScansLost(count=count):
                log.error("%d scans arrived faster than they could be taken; not recorded", count)
                return [self._result(NotRecorded("too busy - scan again"), now, None),
                        Signal(Cue.ERROR)]
            case Tick():
                return self._tick(now)
            case LinkUp():
                self.online = True
                return self._idle_if_idle()
            case LinkDown():
                self.online = False
                # No reply can come now: say "will sync" at once instead of after the timeout.
                return self._expire(lambda _deadline: True) + self._idle_if_idle()
        raise TypeError(f"unexpected event {event!r}")

    def _code_read(self, event: CodeRead, now: float) -> list[Action]:
        self.scans_seen += 1
        self.last_scan_at = event.seen_at
        member_id = self._codes.parse(event.code, event.source)
        if isinstance(member_id, Refused):
            self.codes_refused += 1
            log.info("refused a code from %s: %s (%s, %d chars)", event.source,
                     member_id.reason, redact(event.code), len(event.code))
            return [self._result(UnknownCard(member_id.reason), now, None), Signal(Cue.ERROR)]
        last = self._checked_in.get(member_id)
        if last is not None and 0 <= event.seen_at - last < self._timing.cooldown_s:
            log.info("%s checked in %.0f s ago; not again", redact(member_id),
                     event.seen_at - last)
            self.repeats += 1
            return [self._result(Welcome(self._known.get(member_id), Sync.ALREADY), now, None),
                    Signal(Cue.OK)]
        self._note_checked_in(member_id, event.seen_at)
        self.seq += 1
        checkin = CheckIn(
            event_id=self._new_event_id(), device_id=self._device_id, boot_id=self._boot_id,
            seq=self.seq, captured_at=round(event.seen_at, 3), member_id=member_id,
            source=event.source,
        )
        self.expect_reply(checkin.event_id, member_id)
        sync = Sync.WAITING if self.online else Sync.PENDING
        if self.online:
            self._awaiting[checkin.event_id] = (member_id, now + self._timing.reply_timeout_s)
        screen = Welcome(self._known.get(member_id), sync)
        return [Record(checkin), self._result(screen, now, checkin.event_id), Signal(Cue.OK)]

    def _reply(self, reply: Reply, now: float) -> list[Action]:
        if reply.status is None:
            return []  # a refusal: nothing to show (delivery logs and counts it)
        # Anyone who can publish on our reply topic could otherwise greet the customer
        # as someone else or rewrite a member's cached balance.
        expected = self._recent.get(reply.event_id)
        if expected != reply.member_id:
            self.replies_refused += 1
            log.warning("refused a reply for %s: %s", reply.event_id[:64],
                        "not a check-in of this kiosk" if expected is None
                        else f"it names {redact(reply.member_id)}, not {redact(expected)}")
            return []
        self._awaiting.pop(reply.event_id, None)
        self._remember(reply.member_id, reply.status)
        actions: list[Action] = [Remember(reply.member_id, reply.status)]
        if reply.event_id == self._showing_event:
            actions.append(self._result(Welcome(reply.status, Sync.SYNCED), now, reply.event_id))
            actions.append(Signal(Cue.REWARD if reply.status.reward_unlocked else Cue.OK))
        return actions

    def _expire(self, due: Callable[[float], bool]) -> list[Action]:
        """Give up waiting for the replies whose deadline is ``due``.

        Deadlines are added in order (the time of the scan plus one timeout, on a
        monotonic clock), so the walk stops at the first one not yet due: a tick costs
        what expires, not every reply a rush is still waiting for.
        """
        expired: list[tuple[str, str]] = []
        for event_id, (member_id, deadline) in self._awaiting.items():
            if not due(deadline):
                break
            expired.append((event_id, member_id))
        actions: list[Action] = []
        for event_id, member_id in expired:
            del self._awaiting[event_id]
            if event_id == self._showing_event:
                self.screen = Welcome(self._known.get(member_id), Sync.PENDING)
                actions.append(Show(self.screen))
        return actions

    def _tick(self, now: float) -> list[Action]:
        actions = self._expire(lambda deadline: now >= deadline)
        if self._screen_until is not None and now >= self._screen_until:
            self._screen_until = None
            self._showing_event = None
            self.screen = Idle(self.online)
            actions += [Show(self.screen), Signal(Cue.IDLE if self.online else Cue.OFFLINE)]
        return actions

    def _result(self, screen: Welcome | UnknownCard | NotRecorded, now: float,
                event_id: str | None) -> Show:
        self.screen = screen
        self._showing_event = event_id
        self._screen_until = now + self._timing.result_screen_s
        return Show(screen)

    def _idle_if_idle(self) -> list[Action]:
        if not isinstance(self.screen, Idle) or self.screen.online == self.online:
            return []
        self.screen = Idle(self.online)
        return [Show(self.screen), Signal(Cue.IDLE if self.online else Cue.OFFLINE)]

    def _note_checked_in(self, member_id: str, seen_at: float) -> None:
        if not self._timing.cooldown_s:
            return
        self._checked_in.pop(member_id, None)  # oldest first: the dict is in time order
        self._checked_in[member_id] = seen_at
        while self._checked_in:  # forget those whose cooldown has passed, oldest first
            oldest, at = next(iter(self._checked_in.items()))
            if seen_at - at < self._timing.cooldown_s and len(self._checked_in) <= self._max_known:
                break
            del self._checked_in[oldest]

    def _remember(self, member_id: str, status: MemberStatus) -> None:
        self._known.pop(member_id, None)
        self._known[member_id] = status
        if len(self._known) > self._max_known:
            del self._known[next(iter(self._known))]
