"""Typed events that flow into the controller thread, and the actions it returns.

Producers (code sources, paho's network thread, the timer) only build one of
these and ``put_nowait`` it; the controller thread is the only reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kiosk.counter.checkin import CheckIn
from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import Screen

# --- events -----------------------------------------------------------------


@dataclass(frozen=True)
class CodeRead:
    """A code was read by a camera or serial reader."""

    code: str
    source: str
    seen_at: float


@dataclass(frozen=True)
class LinkUp:
    """Connected to the broker (subscriptions are in place)."""


@dataclass(frozen=True)
class LinkDown:
    """The broker connection is gone; paho keeps reconnecting."""

    reason: str


@dataclass(frozen=True)
class Acked:
    """The broker acknowledged (PUBACK) the message with this id."""

    mid: int
    ok: bool = True
    reason: str = ""


@dataclass(frozen=True)
class Reply:
    """The backend's answer to one check-in: its acknowledgement (``ack``: ``credited``,
    ``duplicate`` or ``refused`` with a ``reason``; empty from a backend that does not
    acknowledge) and, unless refused, the member's standing."""

    event_id: str
    member_id: str
    status: MemberStatus | None
    ack: str = ""
    reason: str = ""
    batches: bool = False
    """The backend says it takes batches of check-ins (``evt/checkins``)."""


@dataclass(frozen=True)
class RecordFailed:
    """A check-in could not be committed to the outbox (disk full, outbox full, I/O error)."""

    checkin: CheckIn
    reason: str


@dataclass(frozen=True)
class StaffMessage:
    """A message on a staff topic (command or desired config), not yet checked at all."""

    topic: str
    payload: bytes
    retained: bool


@dataclass(frozen=True)
class ScansLost:
    """Scans arrived faster than they could be taken; ``count`` were not recorded."""

    count: int


@dataclass(frozen=True)
class DeviceProblem:
    """A device failed (``reason``) or works again (``reason == ""``); reported by its driver."""

    device: str
    reason: str


@dataclass(frozen=True)
class Tick:
    """Time passes: timeouts and screen changes."""


Event = (CodeRead | LinkUp | LinkDown | Acked | Reply | RecordFailed | ScansLost | DeviceProblem
         | StaffMessage | Tick)

# --- actions ----------------------------------------------------------------


class Cue(StrEnum):
    """One meaning of the status light (a ``str``: the name staff and the sim state see)."""

    OFF = "off"
    IDLE = "idle"
    SCAN = "scan"
    OK = "ok"
    REWARD = "reward"
    ERROR = "error"
    OFFLINE = "offline"
    FULL = "full"
    IDENTIFY = "identify"


@dataclass(frozen=True)
class Record:
    """Commit this check-in to the outbox; the actions after it wait for the commit."""

    checkin: CheckIn


@dataclass(frozen=True)
class Show:
    """Put this screen on the display."""

    screen: Screen


@dataclass(frozen=True)
class Signal:
    """Tell the customer this with the light and buzzer."""

    cue: Cue


@dataclass(frozen=True)
class Remember:
    """Store a member's latest status in the cache."""

    member_id: str
    status: MemberStatus


Action = Record | Show | Signal | Remember
