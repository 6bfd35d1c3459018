"""Puts screens on the display: plays stories, animates, shifts and dims the idle screen.

Runs on the controller thread. ``show`` and ``tick`` only decide what the
panel should show; :meth:`Presenter.paint`, which the loop calls once a turn
after the turn's check-ins are committed and published, renders it and hands
the frame to the display worker (never waiting for the bus). So a frame is
rendered only when something on it changed, a rush of customers handled in
one turn draws only the last one's screen, and no frame is drawn sooner than
``FRAME_S`` after the last: one drawn sooner could not be seen on the panel.
"""

from __future__ import annotations

import logging
from typing import Protocol

from PIL import Image

from kiosk.counter.screens import Idle, Screen
from kiosk.ui.layouts import Layout, layout_for
from kiosk.ui.render import render
from kiosk.ui.settings import UiSection
from kiosk.ui.story import Moment, story

log = logging.getLogger(__name__)

SHIFTS = ((0, 0), (1, 0), (1, 1), (0, 1))
"""Pixel-shift positions the idle screen walks through (OLED burn-in protection)."""

FRAME_S = 0.025
"""The shortest time between two frames drawn. A 128x64 frame takes about 23 ms over I2C at
400 kHz (1 KiB, 9 bits a byte), so a frame superseded sooner than this would never be seen
whole; 40 frames a second is also faster than any of the kiosk's animations."""


class Display(Protocol):
    """What the presenter needs of the display worker."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as drawn."""
        ...

    def show(self, image: Image.Image) -> None:
        """Queue a frame."""

    def set_contrast(self, level: int) -> None:
        """Change the brightness."""


class Presenter:
    """The display as the controller thread sees it."""

    def __init__(self, display: Display | None, settings: UiSection, kind: str,
                 contrast: int = 255, result_s: float = 6.0) -> None:
        self._display = display
        self._story_s = result_s / 2
        self._settings = settings
        self._contrast = contrast
        self.layout: Layout = layout_for(display.size if display else (128, 64), kind)
        self._moments: list[Moment] = []
        self._since = 0.0  # when the current moment started
        self._frame = -1
        self._idle_since: float | None = None
        self._dimmed = False
        self._shift = 0
        self._dirty = False  # the panel does not show what it should yet
        self._painted = -FRAME_S  # when the last frame was drawn
        self.frames = 0
        """Frames rendered so far."""

    @property
    def moment(self) -> Screen | None:
        """The screen on the display now (a story's moment, or the screen itself)."""
        return self._moments[0].screen if self._moments else None

    def show(self, screen: Screen, now: float) -> None:
        """Start showing ``screen`` (and its story) now."""
        self._moments = story(screen, self._story_s)
        self._idle_since = now if isinstance(screen, Idle) else None
        self._shift = 0
        if self._dimmed and self._idle_since is None:
            self._set_contrast(self._contrast)
            self._dimmed = False
        self._start_moment(now)

    def tick(self, now: float) -> None:
        """Advance the story, the animation and the burn-in protection to ``now``."""
        if not self._moments:
            return
        moment = self._moments[0]
        if moment.seconds is not None and now - self._since >= moment.seconds:
            while len(self._moments) > 1 and moment.seconds is not None \
                    and now - self._since >= moment.seconds:
                self._since += moment.seconds  # on time, however late the tick
                self._moments.pop(0)
                moment = self._moments[0]
            self._frame = 0
            self._dirty = True
            return
        changed = False
        if moment.frame_s is not None:
            frame = int((now - self._since) / moment.frame_s)
            changed = frame != self._frame
            self._frame = frame
        if self._idle_since is not None:
            changed |= self._protect(now - self._idle_since)
        if changed:
            self._dirty = True

    def paint(self, now: float, at_once: bool = False) -> float | None:
        """Draw what the panel should show, if it changed and a frame is due (``at_once``: even
        if not, as at shutdown, when no later turn comes); the seconds until a frame is due
        when one waits for its turn, else None."""
        if not self._dirty:
            return None
        wait = self._painted + FRAME_S - now
        if wait > 0 and not at_once:
            return wait
        self._dirty = False
        self._painted = now
        self._draw()
        return None

    def _start_moment(self, now: float) -> None:
        self._since = now
        self._frame = 0
        self._dirty = True

    def _protect(self, idle_s: float) -> bool:
        """Shift the idle screen now and then, and dim it after a while; True if it moved."""
        settings = self._settings
        if settings.dim_after_s and not self._dimmed and idle_s >= settings.dim_after_s:
            self._set_contrast(settings.dim_contrast)
            self._dimmed = True
        if not settings.pixel_shift_s:
            return False
        shift = int(idle_s / settings.pixel_shift_s) % len(SHIFTS)
        moved, self._shift = shift != self._shift, shift
        return moved

    def render(self, screen: Screen, frame: int = 0,
               offset: tuple[int, int] = (0, 0)) -> Image.Image:
        """``screen`` as this kiosk draws it (its layout, language and shop name)."""
        return render(screen, self.layout, locale=self._settings.locale,
                      store=self._settings.store_name, frame=frame, offset=offset)

    def _draw(self) -> None:
        if self._display is None or not self._moments:
            return
        offset = SHIFTS[self._shift] if self._idle_since is not None else (0, 0)
        image = self.render(self._moments[0].screen, max(self._frame, 0), offset)
        self.frames += 1
        self._display.show(image)

    def retune(self, settings: UiSection, contrast: int, result_s: float) -> None:
        """Staff's new screen settings (language, shop name, dimming, contrast, how long a
        result stays up), from the next frame on: the panel itself is not opened again."""
        self._settings, self._story_s = settings, result_s / 2
        self.set_brightness(contrast)
        self._dirty = True

    def set_brightness(self, level: int) -> None:
        """The contrast used while not dimmed (staff's ``set-brightness``), from now on."""
        self._contrast = level
        if not self._dimmed:
            self._set_contrast(level)

    def _set_contrast(self, level: int) -> None:
        if self._display is not None:
            self._display.set_contrast(level)
