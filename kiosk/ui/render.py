"""Screen model -> image: the one function the rest of the kiosk calls to draw.

Pure and fast (a fraction of a millisecond for a 128x64 frame; see
``tools/bench/render.py``): the controller thread renders, the display
thread pushes.
"""

from __future__ import annotations

from functools import cache

from PIL import Image

from kiosk.counter.screens import Screen
from kiosk.ui.catalogue import Messages
from kiosk.ui.compose import compose
from kiosk.ui.layouts import Layout, layout_for
from kiosk.ui.page import render_page


@cache
def messages(locale: str) -> Messages:
    """The catalogue of ``locale``, built once."""
    return Messages(locale)


def render(screen: Screen, layout: Layout | None = None, *, locale: str = "en",
           store: str = "", frame: int = 0, offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """Draw ``screen`` for ``layout`` (default: a 128x64 monochrome OLED)."""
    layout = layout or layout_for((128, 64), "mono")
    page = compose(screen, messages(locale), store, frame)
    if offset != (0, 0):
        page = type(page)(page.blocks, page.banner, page.effect, page.frame, offset)
    return render_page(page, layout)
