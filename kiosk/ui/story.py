"""A fresh reply told as a short story: "+10", then any reward, tier and badge, then the summary.

Each moment stays up for its time and animates at its own frame rate; the
last one (the screen itself) stays until the controller shows another.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.screens import (
    BadgeEarned,
    Idle,
    PointsEarned,
    RewardUnlocked,
    Screen,
    StaffInfo,
    Sync,
    TierUpgrade,
    Welcome,
)


@dataclass(frozen=True)
class Moment:
    """One screen of a story: how long it stays (None: until the next story) and its frame time."""

    screen: Screen
    seconds: float | None
    frame_s: float | None
    """Seconds between animation frames; None for a still screen."""


POINTS_S = 1.0
CELEBRATION_S = 1.5


def story(screen: Screen) -> list[Moment]:
    """The moments that show ``screen``."""
    moments: list[Moment] = []
    if isinstance(screen, Welcome) and screen.sync is Sync.SYNCED and screen.status:
        status = screen.status
        if status.points_earned > 0:
            moments.append(Moment(PointsEarned(status), POINTS_S, 0.15))
        if status.reward_unlocked:
            moments.append(Moment(RewardUnlocked(status), CELEBRATION_S, 0.25))
        if status.tier_changed:
            moments.append(Moment(TierUpgrade(status), CELEBRATION_S, 0.25))
        moments += [Moment(BadgeEarned(status, badge), CELEBRATION_S, 0.25)
                    for badge in status.badges[:3]]
    frame_s = {Idle: 1.0, StaffInfo: 0.5 if getattr(screen, "identify", False) else None}
    moments.append(Moment(screen, None, frame_s.get(type(screen))))
    return moments
