"""The fonts the screens use: DejaVu Sans and DejaVu Sans Bold, shipped with the package.

DejaVu 2.37 (from Debian's ``fonts-dejavu-core``; Bitstream Vera licence,
DejaVu changes public domain; see ``fonts/LICENSE``) has every glyph the
catalogue needs: Turkish ı İ ş Ş ğ Ğ ç Ç ö Ö ü Ü, ✓, ★, — and …. Shipping the
files, not looking them up on the system, and always laying text out with
Pillow's basic engine keep the reference images pixel-exact on every machine.

The layout engine is pinned because Pillow picks Raqm whenever the system happens
to have libfribidi (Pillow 13.0 ``PIL/ImageFont.py``, ``FreeTypeFont.__init__``: no
engine given means ``Layout.RAQM`` if ``core.HAVE_RAQM``), and Raqm places glyphs differently: the
arm64 proof (no fribidi in a bare bookworm root) failed 238 reference screens that
pass on a desktop with fribidi. The catalogue's scripts (Latin, Turkish) need no
shaping, so the basic engine loses nothing, and it is the cheaper of the two.
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
    return ImageFont.truetype(str(BOLD if bold else REGULAR), size,
                              layout_engine=ImageFont.Layout.BASIC)


TALLEST = "ÜİÇğyj|"
"""Capitals with accents and letters with descenders: what a line must have room for."""


@cache
def line_height(face: Font) -> int:
    """Pixels from the top of one line to the next: tighter than the font's own line gap,
    which small displays cannot spare."""
    return int(face.getbbox(TALLEST)[3])
