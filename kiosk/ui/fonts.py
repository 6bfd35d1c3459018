"""The fonts the screens use: DejaVu Sans and DejaVu Sans Bold, shipped with the package.

DejaVu 2.37 (from Debian's ``fonts-dejavu-core``; Bitstream Vera licence,
DejaVu changes public domain; see ``fonts/LICENSE``) has every glyph the
catalogue needs: Turkish ı İ ş Ş ğ Ğ ç Ç ö Ö ü Ü, ✓, ★, — and …. Shipping the
files, not looking them up on the system, keeps the reference images
pixel-exact on every machine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PIL import ImageFont

FONT_DIR = Path(__file__).parent / "fonts"
REGULAR = FONT_DIR / "DejaVuSans.ttf"
BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"

Font = ImageFont.FreeTypeFont


@cache
def font(size: int, bold: bool = False) -> Font:
    """The font at ``size`` pixels, loaded once."""
    return ImageFont.truetype(str(BOLD if bold else REGULAR), size)


TALLEST = "ÜİÇğyj|"
"""Capitals with accents and letters with descenders: what a line must have room for."""


@cache
def line_height(face: Font) -> int:
    """Pixels from the top of one line to the next: tighter than the font's own line gap,
    which small displays cannot spare."""
    return int(face.getbbox(TALLEST)[3])
