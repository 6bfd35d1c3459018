"""Draws the display in a terminal, and the lights beside it, within 79 columns and 18 rows.

Each character shows 2x4 pixels as a Unicode Braille cell, so a 128x64 panel
is drawn pixel for pixel in 64 columns and 16 rows: with its border, 18 rows,
which leaves room for the demo's news in an 80x24 terminal. (Quadrant blocks,
2x2 pixels a character, needed 34 rows: the frames scrolled away.) A wider or
taller panel (256x64, 128x128) is first scaled to fit; greyscale and colour
pixels count as lit from a quarter brightness up.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

MAX_COLUMNS = 64
"""Columns for the frame itself; with its border and the lights beside it: 79."""
SIDE_COLUMNS = 12
"""The lights' lines beside the frame: 66 + 1 + 12 = 79 columns, so the cursor never reaches
an 80-column terminal's last column (where a line would wrap or be erased short)."""
MAX_ROWS = 16
"""Rows for the frame itself; with its border: :data:`FRAME_ROWS`."""
FRAME_ROWS = MAX_ROWS + 2
CELL_W, CELL_H = 2, 4
"""Pixels a character shows."""
_BRAILLE = 0x2800
_DOTS = ((0, 0, 0x01), (0, 1, 0x02), (0, 2, 0x04), (1, 0, 0x08), (1, 1, 0x10), (1, 2, 0x20),
         (0, 3, 0x40), (1, 3, 0x80))
"""(x, y, bit) of each dot in a Braille cell (Unicode's dot numbering: 1-3 and 7 on the left)."""
_LED = {True: "●", False: "○"}


def frame_lines(image: Image.Image) -> list[str]:
    """The image as lines of Braille cells, at most :data:`MAX_COLUMNS` x :data:`MAX_ROWS`."""
    scale = min(1.0, CELL_W * MAX_COLUMNS / image.width, CELL_H * MAX_ROWS / image.height)
    if scale < 1.0:
        image = image.convert("L").resize((round(image.width * scale),
                                           round(image.height * scale)), Image.Resampling.BOX)
    width, height = image.size
    lit = image.convert("L").point(lambda value: 255 if value >= 64 else 0).tobytes()

    def cell(x: int, y: int) -> str:
        bits = sum(bit for dx, dy, bit in _DOTS
                   if x + dx < width and y + dy < height and lit[(y + dy) * width + x + dx])
        return chr(_BRAILLE + bits) if bits else " "

    return ["".join(cell(x, y) for x in range(0, width, CELL_W))
            for y in range(0, height, CELL_H)]


def side_lines(lights: dict[str, Any]) -> list[str]:
    """The lights' state as short lines: pattern, each LED, the buzzer's note."""
    if not lights:
        return []
    lines = [str(lights.get("pattern", ""))]
    for name, level in lights.get("led", {}).items():
        lines.append(f"{name:<6} {_LED[bool(level)]}")
    if "buzzer" in lights:
        lines.append(f"buzzer {lights['buzzer'] or '-'}")
    return [line[:SIDE_COLUMNS] for line in lines]


def draw(image: Image.Image, lights: dict[str, Any]) -> str:
    """A framed display with the lights' state beside it, ready to print."""
    lines = frame_lines(image)
    width = len(lines[0]) if lines else 0
    side = side_lines(lights)
    out = ["┌" + "─" * width + "┐"]
    for index, line in enumerate(lines):
        out.append(f"│{line}│" + (f" {side[index]}" if index < len(side) else ""))
    out.append("└" + "─" * width + "┘")
    return "\n".join(out)
