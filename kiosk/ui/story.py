"""A fresh reply told as a short story: "+10", then any reward, tier and badge, then the summary.

Each moment stays up for its time and animates at its own frame rate; the
last one (the screen itself) stays until the controller shows another. The
story takes at most half the result time, so the balance is always seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.counter.screens import (
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


def story(screen: Screen, budget_s: float = 4.0) -> list[Moment]:
    """The moments that show ``screen``; the ones before it share at most ``budget_s``."""
    moments: list[Moment] = []
    if isinstance(screen, Welcome) and screen.sync is Sync.SYNCED and screen.status:
        status = screen.status
        if status.points_earned > 0:
            moments.append(Moment(PointsEarned(status), POINTS_S, 0.15))
        if status.reward_unlocked:
            moments.append(Moment(RewardUnlocked(status), CELEBRATION_S, 0.25))
        if status.tier_changed:
            moments.append(Moment(TierUpgrade(status), CELEBRATION_S, 0.25))
        if status.badge:
            moments.append(Moment(BadgeEarned(status, status.badge), CELEBRATION_S, 0.25))
    lead_s = sum(moment.seconds or 0.0 for moment in moments)
    if lead_s > budget_s:  # a short result time: play the story faster, never skip the balance
        moments = [Moment(m.screen, (m.seconds or 0.0) * budget_s / lead_s, m.frame_s)
                   for m in moments]
    frame_s = {Idle: 1.0, StaffInfo: 0.5 if getattr(screen, "identify", False) else None}
    moments.append(Moment(screen, None, frame_s.get(type(screen))))
    return moments
