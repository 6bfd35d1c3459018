"""Draws the OLED in a terminal: two pixel rows per text line with Unicode half blocks."""

from __future__ import annotations

from PIL import Image

_BLOCKS = {(0, 0): " ", (1, 0): "\u2580", (0, 1): "\u2584", (1, 1): "\u2588"}
_LED = {True: "\u25cf", False: "\u25cb"}


def frame_lines(image: Image.Image) -> list[str]:
    """The image (any mode, thresholded at half grey) as ``height/2`` lines of text."""
    mono = image.convert("1")
    width, height = mono.size
    pixels = mono.load()
    lines = []
    for y in range(0, height, 2):
        row = []
        for x in range(width):
            top = 1 if pixels[x, y] else 0
            bottom = 1 if y + 1 < height and pixels[x, y + 1] else 0
            row.append(_BLOCKS[(top, bottom)])
        lines.append("".join(row))
    return lines


def draw(image: Image.Image, lights: dict[str, bool]) -> str:
    """A framed display with the LED states beside it, ready to print."""
    lines = frame_lines(image)
    width = image.size[0]
    side = [f" {name:<6} {_LED[on]}" for name, on in lights.items()]
    out = ["\u250c" + "\u2500" * width + "\u2510"]
    for index, line in enumerate(lines):
        out.append(f"\u2502{line}\u2502" + (side[index] if index < len(side) else ""))
    out.append("\u2514" + "\u2500" * width + "\u2518")
    return "\n".join(out)
