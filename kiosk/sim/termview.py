"""Draws the display in a terminal, and the lights beside it, within 80 columns.

Each character shows 2x2 pixels with Unicode quadrant blocks, so a 128x64
panel is drawn pixel for pixel in 64 columns and 32 lines. A wider panel
(256x64) is first scaled to fit; greyscale and colour pixels count as lit
from a quarter brightness up.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

MAX_COLUMNS = 64
"""Columns for the frame itself; with its border and the lights beside it: 80."""
_QUADRANTS = " ▘▝▀▖▌▞▛▗▚▐▜▄▙▟█"
"""Indexed by top-left + 2 * top-right + 4 * bottom-left + 8 * bottom-right."""
_LED = {True: "●", False: "○"}


def frame_lines(image: Image.Image) -> list[str]:
    """The image as lines of quadrant blocks, at most :data:`MAX_COLUMNS` wide."""
    if image.width > 2 * MAX_COLUMNS:
        scale = 2 * MAX_COLUMNS / image.width
        image = image.convert("L").resize((2 * MAX_COLUMNS, round(image.height * scale)),
                                          Image.Resampling.BOX)
    width, height = image.size
    lit = image.convert("L").point(lambda value: 255 if value >= 64 else 0).tobytes()

    def on(x: int, y: int) -> int:
        return 1 if x < width and y < height and lit[y * width + x] else 0

    return ["".join(_QUADRANTS[on(x, y) + 2 * on(x + 1, y) + 4 * on(x, y + 1)
                               + 8 * on(x + 1, y + 1)] for x in range(0, width, 2))
            for y in range(0, height, 2)]


def side_lines(lights: dict[str, Any]) -> list[str]:
    """The lights' state as short lines: pattern, each LED, the buzzer's note."""
    if not lights:
        return []
    lines = [f"{lights.get('pattern', '')[:13]}"]
    for name, level in lights.get("led", {}).items():
        lines.append(f"{name:<6} {_LED[bool(level)]}")
    if "buzzer" in lights:
        lines.append(f"buzzer {lights['buzzer'] or '-'}"[:13])
    return lines


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
