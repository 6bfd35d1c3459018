"""One layout per kind of display: font sizes, spacing and colours, chosen from size and pixels.

A layout says *how big* things are; what is on a screen, in which order and
what may be left out when room runs short is the screen's business
(``kiosk.ui.compose``). Portrait displays (``rotate`` 1 or 3) get narrower
layouts that wrap more and use smaller type.
"""

from __future__ import annotations

from dataclasses import dataclass

Colour = int | tuple[int, int, int]


@dataclass(frozen=True)
class Layout:
    """Sizes in pixels for one display; ``palette`` maps colour names to pixel values."""

    name: str
    size: tuple[int, int]
    mode: str
    sizes: dict[str, int]
    """Font size per text role: small, body, title, big, huge."""
    margin: int
    bar: int
    max_lines: int
    """How many lines a wrapping text may take."""
    palette: dict[str, Colour]

    @property
    def width(self) -> int:
        """Pixels across."""
        return self.size[0]

    @property
    def height(self) -> int:
        """Pixels down."""
        return self.size[1]


_MONO: dict[str, Colour] = {name: 1 for name in ("fg", "accent", "good", "bad", "dim")}
_MONO["bg"] = 0
_GREY: dict[str, Colour] = {"fg": (255, 255, 255), "accent": (255, 255, 255),
                            "good": (255, 255, 255), "bad": (255, 255, 255),
                            "dim": (120, 120, 120), "bg": (0, 0, 0)}
_COLOUR: dict[str, Colour] = {"fg": (255, 255, 255), "accent": (255, 196, 0),
                              "good": (40, 220, 100), "bad": (255, 70, 60),
                              "dim": (140, 140, 160), "bg": (0, 0, 0)}

_SIZES = {
    # name: (small, body, title, big, huge), margin, bar, max_lines
    "short": ((9, 10, 11, 14, 20), 0, 3, 1),
    "landscape": ((10, 11, 12, 18, 28), 0, 4, 2),
    "wide": ((10, 11, 13, 18, 34), 0, 4, 2),
    "square": ((11, 12, 14, 20, 36), 3, 7, 3),
    "portrait": ((9, 10, 11, 14, 22), 0, 5, 4),
}


def layout_for(size: tuple[int, int], kind: str) -> Layout:
    """The layout for a display of ``size`` (as drawn) whose pixels are ``kind``:
    mono, greyscale or colour."""
    width, height = size
    if height > width * 1.2:
        family = "portrait"
    elif height <= 40:
        family = "short"
    elif width > 2 * height:
        family = "wide"
    elif height >= width * 0.8:
        family = "square"
    else:
        family = "landscape"
    (small, body, title, big, huge), margin, bar, max_lines = _SIZES[family]
    palette = {"mono": _MONO, "greyscale": _GREY, "colour": _COLOUR}[kind]
    return Layout(
        name=f"{kind}-{width}x{height}", size=size, mode="1" if kind == "mono" else "RGB",
        sizes={"small": small, "body": body, "title": title, "big": big, "huge": huge},
        margin=margin, bar=bar, max_lines=max_lines, palette=palette)
