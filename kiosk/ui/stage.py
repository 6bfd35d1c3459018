"""What is on the display: the controller's screen, or what stands in for its idle screen.

The controller only knows the counter (welcome, unknown card, idle). While it
shows its idle screen, other parts of the kiosk may have something more
important to say — "out of service" while no visit can be stored, the staff
screen while staff identify the kiosk, the pairing code until it is enrolled.
Each such part gives the stage a *stand-in*: a function that returns its
screen, or None when it has nothing to say. The first one that speaks wins,
in the order given. A customer's result screen is never covered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from kiosk.counter.screens import Idle, Screen

StandIn = Callable[[], Screen | None]


class Shows(Protocol):
    """What the stage needs of the presenter."""

    def show(self, screen: Screen, now: float) -> None:
        """Put ``screen`` up (rendering, a story, animation)."""


class Stage:
    """Decides and shows the one screen; called only from the controller thread."""

    def __init__(self, presenter: Shows, stand_ins: Sequence[StandIn] = ()) -> None:
        self._presenter = presenter
        self._stand_ins = list(stand_ins)
        self._wanted: Screen | None = None  # what the controller last asked to show
        self.screen: Screen | None = None
        """What is on the display now."""

    def add(self, stand_in: StandIn) -> None:
        """Let ``stand_in`` cover the idle screen (after those added before it)."""
        self._stand_ins.append(stand_in)

    def want(self, screen: Screen, now: float) -> None:
        """The controller asks for ``screen``: it goes up even if equal (a new result)."""
        self._wanted = screen
        self.refresh(now, force=True)

    def refresh(self, now: float, force: bool = False) -> None:
        """Show what should be up now; call again whenever a stand-in may have changed."""
        if self._wanted is None:
            return
        screen = self._wanted
        if isinstance(screen, Idle):
            screen = next((s for s in (stand_in() for stand_in in self._stand_ins)
                           if s is not None), screen)
        if force or screen != self.screen:
            self.screen = screen
            self._presenter.show(screen, now)

    def again(self, now: float) -> None:
        """Put the current screen up again (after a display test took the panel)."""
        if self.screen is not None:
            self._presenter.show(self.screen, now)
