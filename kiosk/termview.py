"""Draws the OLED in a terminal: two pixel rows per text line with Unicode half blocks."""

from __future__ import annotations

from PIL import Image

_BLOCKS = {(False, False): " ", (True, False): "\u2580", (False, True): "\u2584",
           (True, True): "\u2588"}
_LED = {True: "\u25cf", False: "\u25cb"}


def frame_lines(image: Image.Image) -> list[str]:
    """The image (any mode, thresholded at half grey) as ``height/2`` lines of text."""
    width, height = image.size
    lit = image.convert("1").convert("L").tobytes()  # one byte per pixel: 0 or 255
    lines = []
    for y in range(0, height, 2):
        top = lit[y * width:(y + 1) * width]
        bottom = lit[(y + 1) * width:(y + 2) * width] if y + 1 < height else bytes(width)
        lines.append("".join(_BLOCKS[(t > 0, b > 0)] for t, b in zip(top, bottom, strict=True)))
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
