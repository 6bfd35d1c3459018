"""What the customer sees, as plain values: the screen models.

The controller decides *what* to show by returning one of these; ``kiosk.ui``
decides *how* (layout per display, language, animation) and renders it to an
image. Screens hold no text meant for the customer: words come from the
message catalogue (``kiosk.ui.catalogue``), so every screen exists in every
language.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kiosk.counter.members import MemberStatus


class Sync(enum.Enum):
    """How far a check-in has got."""

    WAITING = "waiting"
    """Stored; the backend's answer is expected any moment."""
    SYNCED = "synced"
    """The backend answered: the status is fresh."""
    PENDING = "pending"
    """Stored; it will be sent (offline, or no answer in time). The status is the last known."""
    ALREADY = "already"
    """Checked in a moment ago (cooldown): nothing new was recorded."""


@dataclass(frozen=True)
class Idle:
    """Waiting for a customer."""

    online: bool


@dataclass(frozen=True)
class Welcome:
    """A member checked in; ``status`` is the backend's answer or the last known one."""

    status: MemberStatus | None
    sync: Sync


@dataclass(frozen=True)
class UnknownCard:
    """The code is not a member code: nothing was recorded or sent. ``reason`` says what it is."""

    reason: str = ""


@dataclass(frozen=True)
class NotRecorded:
    """The kiosk could not store the visit (storage full or failing): the customer must know."""

    reason: str


class Fault(enum.Enum):
    """Why the kiosk is out of service."""

    OUTBOX_FULL = "outbox_full"
    HARDWARE = "hardware"


@dataclass(frozen=True)
class OutOfService:
    """The kiosk cannot take check-ins until staff step in; ``detail`` is for staff."""

    fault: Fault
    detail: str = ""


@dataclass(frozen=True)
class StaffInfo:
    """What staff need at the counter: which kiosk this is and how it is connected."""

    device_id: str
    ip_address: str
    broker: str
    """``connected`` or ``offline``."""
    config_version: int
    identify: bool = False
    """True while staff asked the kiosk to identify itself (the screen flashes)."""


@dataclass(frozen=True)
class Pairing:
    """No staff key is trusted yet: staff enroll the kiosk with this id and code."""

    device_id: str
    code: str


# The moments of a fresh reply, shown one after another before the Welcome summary
# (``kiosk.ui.story``); the controller never returns them itself.


@dataclass(frozen=True)
class PointsEarned:
    """The "+10" of this visit, counting up."""

    status: MemberStatus


@dataclass(frozen=True)
class RewardUnlocked:
    """A celebration with the reward's name."""

    status: MemberStatus


@dataclass(frozen=True)
class TierUpgrade:
    """The member moved up to ``status.tier``."""

    status: MemberStatus


@dataclass(frozen=True)
class BadgeEarned:
    """The member earned ``badge`` this visit."""

    status: MemberStatus
    badge: str


Screen = (Idle | Welcome | UnknownCard | NotRecorded | OutOfService
          | StaffInfo | Pairing | PointsEarned | RewardUnlocked | TierUpgrade | BadgeEarned)
