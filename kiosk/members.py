"""Member codes and what the kiosk knows about a member.

Logs never hold a full member id: :func:`redact` gives a short, stable hash
that still lets staff match log lines to each other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class MemberStatus:
    """A member's standing as the backend last reported it."""

    display_name: str
    balance: int
    tier: str
    points_to_next: int
    """Points still needed for the next reward (not the next tier)."""
    progress: float
    reward_unlocked: str = ""
    next_reward: str = ""
    """The name of the reward ``points_to_next`` leads to; empty when the backend does not say."""
    points_earned: int = 0
    tier_changed: bool = False
    badge: str = ""
    """A badge earned with this visit."""

    def standing(self) -> MemberStatus:
        """The lasting part, without what happened on this visit (for the member cache)."""
        return replace(self, reward_unlocked="", points_earned=0, tier_changed=False, badge="")


class MemberCodes:
    """Recognises member codes; anything else is an unknown card and nothing is sent."""

    def __init__(self, pattern: str) -> None:
        self._pattern = re.compile(pattern)

    def parse(self, code: str) -> str | None:
        """The member id the code stands for, or None when it is not a member code."""
        code = code.strip()
        return code if self._pattern.fullmatch(code) else None


def redact(member_id: str) -> str:
    """A short hash of a member id, safe for logs."""
    return "m:" + hashlib.sha256(member_id.encode()).hexdigest()[:8]
