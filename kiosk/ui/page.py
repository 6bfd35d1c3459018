"""A screen's content as a page of blocks, and the one engine that lays a page out.

Blocks are stacked top to bottom and spread over the height. When a small
display has no room for all of them, the blocks with the highest ``drop``
number go first (0 = never dropped); text is wrapped or cut to the width
(:mod:`kiosk.ui.text`), so nothing is ever clipped mid-glyph.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw

from kiosk.ui.fonts import Font, font, line_height
from kiosk.ui.layouts import Layout
from kiosk.ui.text import clean, fitter

ROLES = ["small", "body", "title", "big", "huge"]
"""Text roles from the smallest type to the largest."""
BOLD_ROLES = {"title", "big", "huge"}
MARQUEE_STEP = 4


@dataclass(frozen=True)
class Text:
    """One piece of text in a role (small, body, title, big, huge) and a palette colour."""

    text: str
    role: str = "body"
    colour: str = "fg"
    drop: int = 0
    wrap: bool = True
    """Wrap onto as many lines as the layout allows; otherwise shrink, then cut."""
    align: str = "center"


@dataclass(frozen=True)
class Row:
    """Two texts on one line: ``right`` is fitted first, ``left`` gets the rest."""

    left: Text
    right: Text
    drop: int = 0


@dataclass(frozen=True)
class Bar:
    """A progress bar, ``fraction`` filled."""

    fraction: float
    drop: int = 0


@dataclass(frozen=True)
class Pulse:
    """The idle animation: three dots, one lit, moving with the frame."""

    frame: int
    drop: int = 0


Block = Text | Row | Bar | Pulse


@dataclass(frozen=True)
class Page:
    """What one screen shows; ``effect`` is ``marquee`` (celebration) or ``flash`` (identify)."""

    blocks: list[Block]
    banner: Text | None = None
    effect: str = ""
    frame: int = 0
    offset: tuple[int, int] = (0, 0)


def _face(layout: Layout, role: str) -> Font:
    return font(layout.sizes[role], bold=role in BOLD_ROLES)


def _shrink_to_fit(block: Text, layout: Layout, width: int) -> tuple[str, list[str]]:
    """The largest role, from the block's own down to ``body``, that shows the whole text."""
    text = clean(block.text)
    index = ROLES.index(block.role)
    for role in ROLES[min(index, 1):index + 1][::-1]:  # its own role, then smaller, to body
        lines, whole = fitter(_face(layout, role)).wrap(text, width,
                                                          layout.max_lines if block.wrap else 1)
        if whole:
            return role, lines
    return role, lines


class Placed:
    """A block measured for ``layout``: the lines it shows (fitted to ``width``) and its height."""

    def __init__(self, block: Block, layout: Layout, width: int) -> None:
        self.block = block
        self.role = ""
        self.lines: list[str] = []
        self.stacked: list[Placed] = []
        if isinstance(block, Text):
            self.role, self.lines = _shrink_to_fit(block, layout, width)
            self.height = line_height(_face(layout, self.role)) * len(self.lines)
        elif isinstance(block, Row):
            right_face = _face(layout, block.right.role)
            left_face = _face(layout, block.left.role)
            right = fitter(right_face).fit(clean(block.right.text), width // 2)
            room = width - fitter(right_face).width(right) - 4
            left = clean(block.left.text)
            self.lines = [fitter(left_face).fit(left, room), right]
            self.height = max(line_height(left_face), line_height(right_face))
            if self.lines[0] != left and layout.max_lines > 2:  # tall display: a line each
                self.stacked = [Placed(block.left, layout, width),
                                Placed(block.right, layout, width)]
                self.height = sum(part.height for part in self.stacked)
        elif isinstance(block, Bar):
            self.height = layout.bar + 2
        else:
            self.height = 5


def render_page(page: Page, layout: Layout) -> Image.Image:
    """Draw ``page`` for ``layout``: an image of the layout's size and mode."""
    palette = layout.palette
    image = Image.new(layout.mode, layout.size, palette["bg"])
    draw = ImageDraw.Draw(image)
    dx, dy = page.offset
    margin = max(layout.margin, 2) if page.effect == "marquee" else layout.margin
    left, right = margin + dx, layout.width - margin + dx
    top, bottom = margin + dy, layout.height - margin + dy
    width = right - left
    if page.banner is not None:
        bottom = _banner(draw, page.banner, layout, left, right, bottom)
    placed = [Placed(block, layout, width) for block in page.blocks]
    while sum(p.height for p in placed) > bottom - top and any(p.block.drop for p in placed):
        worst = max(range(len(placed)), key=lambda i: (placed[i].block.drop, i))
        del placed[worst]
    spare = max(0, bottom - top - sum(p.height for p in placed))
    gap = min(spare // (len(placed) + 1), 6) if placed else 0
    y = top + (spare - gap * (len(placed) - 1)) // 2 if placed else top
    if page.effect == "marquee":
        _marquee(draw, layout, page.frame)
    for item in placed:
        _draw(draw, item, layout, left, right, y)
        y += item.height + gap
    if page.effect == "flash" and page.frame % 2:
        image = ImageChops.invert(image.convert("L")).convert(layout.mode) \
            if layout.mode == "1" else ImageChops.invert(image)
    return image


def _draw(draw: ImageDraw.ImageDraw, item: Placed, layout: Layout, left: int, right: int,
          y: int) -> None:
    block = item.block
    palette = layout.palette
    if isinstance(block, Text):
        face = _face(layout, item.role)
        for line in item.lines:
            _text(draw, line, face, palette[block.colour], block.align, left, right, y)
            y += line_height(face)
    elif item.stacked:
        for part in item.stacked:
            _draw(draw, part, layout, left, right, y)
            y += part.height
    elif isinstance(block, Row):
        left_face, right_face = _face(layout, block.left.role), _face(layout, block.right.role)
        _text(draw, item.lines[0], left_face, palette[block.left.colour], "left", left, right, y)
        _text(draw, item.lines[1], right_face, palette[block.right.colour], "right", left,
              right, y)
    elif isinstance(block, Bar):
        fraction = min(max(block.fraction, 0.0), 1.0)
        draw.rectangle((left, y + 1, right - 1, y + layout.bar), outline=palette["fg"])
        filled = round((right - left - 4) * fraction)
        if filled:
            draw.rectangle((left + 2, y + 2, left + 1 + filled, y + layout.bar - 1),
                           fill=palette["accent"])
    else:
        middle = (left + right) // 2
        for index in range(3):
            x = middle + (index - 1) * 8
            lit = index == block.frame % 3
            draw.rectangle((x - 1, y + 1, x + 1, y + 3), fill=palette["fg"] if lit
                           else palette["bg"], outline=palette["dim"])


def _text(draw: ImageDraw.ImageDraw, line: str, face: Font, colour: object, align: str,
          left: int, right: int, y: int) -> None:
    x: float = left
    if align != "left":
        room = right - left - fitter(face).width(line)
        x = left + (room if align == "right" else room / 2)
    draw.text((round(x), y), line, font=face, fill=colour)  # type: ignore[arg-type]


def _banner(draw: ImageDraw.ImageDraw, banner: Text, layout: Layout, left: int, right: int,
            bottom: int) -> int:
    """An inverted strip along the bottom; returns where the blocks above must end."""
    face = _face(layout, banner.role)
    height = line_height(face) + 1
    top = bottom - height
    draw.rectangle((left, top, right - 1, bottom - 1), fill=layout.palette[banner.colour])
    line = fitter(face).fit(clean(banner.text), right - left - 2)
    _text(draw, line, face, layout.palette["bg"], "center", left, right, top)
    return top


def _marquee(draw: ImageDraw.ImageDraw, layout: Layout, frame: int) -> None:
    """Celebration lights: a dotted border whose dots run round with the frames."""
    width, height = layout.size
    colour = layout.palette["accent"]
    step = MARQUEE_STEP
    for x in range(frame % step, width, step):
        draw.point((x, 0), fill=colour)
        draw.point((width - 1 - x, height - 1), fill=colour)
    for y in range(frame % step, height, step):
        draw.point((width - 1, y), fill=colour)
        draw.point((0, height - 1 - y), fill=colour)
