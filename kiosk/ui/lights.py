"""What the status light and buzzer tell the people at the counter, by name.

The controller asks for a :class:`~kiosk.counter.events.Cue` ("reward", "error");
this table says how each one looks and sounds, and ``drivers.lights`` plays it.
The vocabulary is the shop's, so it lives with the application, not with the
GPIO driver.
"""

from __future__ import annotations

from typing import Protocol

from drivers.lights import GOLD, GREEN, RED, TEAL, WHITE, Light, Pattern
from kiosk.counter.events import Cue

PATTERNS: dict[Cue, Pattern] = {
    Cue.OFF: Pattern(),
    Cue.IDLE: Pattern(Light(TEAL, "pulse", 2.0, 2.0, None)),
    Cue.SCAN: Pattern(Light(WHITE, "blink", 0.08, 0.0, 1), (("A5", 0.05),)),
    Cue.OK: Pattern(Light(GREEN, "blink", 1.5, 0.0, 1), (("E5", 0.08), ("A5", 0.12))),
    Cue.REWARD: Pattern(Light(GOLD, "blink", 0.15, 0.15, 8),
                        (("C5", 0.12), ("E5", 0.12), ("G5", 0.12), ("C6", 0.36))),
    Cue.ERROR: Pattern(Light(RED, "blink", 0.2, 0.2, 3), (("A3", 0.4),)),
    Cue.OFFLINE: Pattern(Light(RED, "blink", 0.1, 2.9, None)),
    Cue.FULL: Pattern(Light(RED, "steady"), (("A3", 0.3), (None, 0.2), ("A3", 0.3))),
    Cue.IDENTIFY: Pattern(Light(WHITE, "blink", 0.25, 0.25, 20),
                          (("A5", 0.1), (None, 0.1)) * 3),
}


class Player(Protocol):
    """What plays a pattern: ``drivers.lights.Lights``."""

    def play(self, pattern: Pattern, name: str) -> None:
        """Start ``pattern`` at once, replacing the one running."""


def cue(lights: Player, meaning: Cue) -> None:
    """Play what ``meaning`` looks and sounds like."""
    lights.play(PATTERNS[meaning], meaning.value)
