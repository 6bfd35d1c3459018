"""The controller thread's inbox: one lane per kind of producer, so no flood starves another.

- **link** events (PUBACKs, connect, disconnect) and device problems are never
  dropped: a lost PUBACK would hold a publish-window slot forever, a lost
  device report would leave the retained state wrong. The lane needs no bound
  of its own: acknowledgements are bounded by the publish window, connection
  events by paho's reconnect back-off and device reports by the drivers'.
- **scans** are bounded; a scan that does not fit is counted so that the
  controller can tell the customer to scan again (never silent).
- **replies** (the backend's answers, which acknowledge check-ins) are bounded
  and counted when dropped: a dropped acknowledgement only means that check-in
  is sent again later. Their lane is deep enough for a drain's answers, which
  the controller takes in one go.
- **staff messages** are bounded and counted when dropped: anyone on the broker
  can flood them.

The controller takes link events first, then turns between scans, replies and
staff messages, so a jammed scanner cannot starve replies and no message flood
can starve customers.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from kiosk.counter.events import Acked, CodeRead, DeviceProblem, Event, LinkDown, LinkUp, Reply

SCAN_LANE = 64
"""Scans waiting at once; a person cannot outrun it, a jammed reader can."""
MESSAGE_LANE = 256
"""Incoming staff messages waiting at once."""
REPLY_LANE = 4096
"""Replies waiting at once: twice the rows a kiosk lets wait for the backend."""

log = logging.getLogger(__name__)


class Inbox:
    """Bounded lanes with one wait point; any thread may ``put``, one thread ``get``s."""

    def __init__(self, scan_lane: int = SCAN_LANE, message_lane: int = MESSAGE_LANE,
                 reply_lane: int = REPLY_LANE) -> None:
        self._link: deque[Event] = deque()
        self._scans: deque[Event] = deque()
        self._messages: deque[Event] = deque()
        self._replies: deque[Event] = deque()
        self._limits = {id(self._scans): scan_lane, id(self._messages): message_lane,
                        id(self._replies): reply_lane}
        self._turns = (self._scans, self._replies, self._messages)
        self._ready = threading.Condition(threading.Lock())
        self._turn = 0
        self.dropped_scans = 0
        self.dropped_messages = 0

    def put(self, event: Event) -> None:
        """Queue ``event`` without blocking; when its lane is full it is dropped, counted
        and logged (never for link events)."""
        if isinstance(event, Acked | LinkUp | LinkDown | DeviceProblem):
            lane = self._link
        elif isinstance(event, CodeRead):
            lane = self._scans
        elif isinstance(event, Reply):
            lane = self._replies
        else:
            lane = self._messages
        with self._ready:
            limit = self._limits.get(id(lane))
            full = limit is not None and len(lane) >= limit
            if not full:
                lane.append(event)
                self._ready.notify()
            elif lane is self._scans:
                self.dropped_scans += 1
            else:
                self.dropped_messages += 1
        if full:  # logged outside the lock: the controller thread must not wait for a log line
            log.warning("inbox lane full; dropped %s", type(event).__name__)

    def get(self, timeout: float) -> Event | None:
        """The next event by the lanes' rule, waiting up to ``timeout`` s; None if none came."""
        with self._ready:
            if not (self._link or self._scans or self._messages or self._replies):
                self._ready.wait(timeout)
            if self._link:
                return self._link.popleft()
            turns = len(self._turns)
            for step in range(turns):
                lane = self._turns[(self._turn + step) % turns]
                if lane:
                    self._turn = (self._turn + step + 1) % turns
                    return lane.popleft()
            return None

    def pending_scans(self) -> list[Event]:
        """Take every scan waiting now (the controller commits a rush in one transaction)."""
        with self._ready:
            scans = list(self._scans)
            self._scans.clear()
            return scans

    def pending_replies(self) -> list[Reply]:
        """Take every reply waiting now (a drain's acknowledgements are deleted in one go)."""
        with self._ready:
            replies: list[Reply] = list(self._replies)  # type: ignore[arg-type]
            self._replies.clear()
            return replies

    def pending_acks(self) -> list[Acked]:
        """Take the acknowledgements waiting at the head of the link lane (a drain's PUBACKs are
        handled in one go; a connect or disconnect behind them keeps its place)."""
        acks: list[Acked] = []
        with self._ready:
            while self._link and isinstance(self._link[0], Acked):
                acks.append(self._link.popleft())  # type: ignore[arg-type]
        return acks

    @property
    def scans_waiting(self) -> int:
        """Scans in their lane now: how close a reader is to having one dropped."""
        with self._ready:
            return len(self._scans)

    def __len__(self) -> int:
        with self._ready:
            return (len(self._link) + len(self._scans) + len(self._messages)
                    + len(self._replies))
