"""Text that fits: cut or wrapped to a width in time linear in the text's length.

Names and reward titles come from outside, and a 200,000-character name once
froze the controller for 27 s: the old fitting measured the whole string again
after dropping each character. Here each character's advance is looked up
once per font (cached), a walk over the characters stops as soon as the width
is used up, and only the short result is measured as a whole (for kerning).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import cache

from kiosk.ui.fonts import Font

ELLIPSIS = "…"
MAX_CHARS = 512
"""Nothing longer is ever shown, whatever a display's width."""

WIDTHS_KEPT = 512
"""Measured lines remembered per font (a screen shows a handful)."""

Measure = Callable[[str], float]


class Fitter:
    """Fits text for one font; ``measure`` is the font's ``getlength`` unless a test counts it."""

    def __init__(self, face: Font, measure: Measure | None = None) -> None:
        self._measure = measure or (lambda text: face.getlength(text))
        self._advances: dict[str, float] = {}
        self._widths: dict[str, float] = {}  # lines are measured again on every animation frame

    def width(self, text: str) -> float:
        """The rendered width of ``text`` (kerning included)."""
        width = self._widths.get(text)
        if width is None:
            if len(self._widths) >= WIDTHS_KEPT:
                self._widths.clear()
            width = self._widths[text] = self._measure(text)
        return width

    def _advance(self, char: str) -> float:
        advance = self._advances.get(char)
        if advance is None:
            advance = self._advances[char] = self._measure(char)
        return advance

    def _prefix(self, text: str, width: float) -> int:
        """How many leading characters fit by their advances (stops at the first that does not)."""
        used = 0.0
        for index, char in enumerate(text):
            used += self._advance(char)
            if used > width:
                return index
        return len(text)

    def fit(self, text: str, width: float) -> str:
        """``text`` if it fits ``width``, else its longest prefix that fits with an ellipsis."""
        count = self._prefix(text, width)
        if count == len(text) and self.width(text) <= width:
            return text
        room = width - self._advance(ELLIPSIS)
        count = self._prefix(text[:count], room)
        while count and self.width(text[:count] + ELLIPSIS) > width:
            count -= 1  # kerning made it wider than the advances said: rare, and a few steps
        return text[:count].rstrip() + ELLIPSIS if count else ELLIPSIS

    def wrap(self, text: str, width: float, max_lines: int) -> tuple[list[str], bool]:
        """Up to ``max_lines`` lines, broken at spaces; the last one cut with an ellipsis.

        The flag says whether the whole text is shown without breaking a word.
        """
        lines: list[str] = []
        rest = text
        whole = True
        while rest and len(lines) < max_lines - 1:
            count = self._prefix(rest, width)
            if count >= len(rest) and self.width(rest) <= width:
                break
            space = rest.rfind(" ", 0, count + 1)
            if space <= 0:
                whole = False
            cut = space if space > 0 else max(count, 1)
            lines.append(rest[:cut].rstrip())
            rest = rest[cut:].lstrip()
        if rest:
            last = self.fit(rest, width)
            whole = whole and last == rest
            lines.append(last)
        return lines, whole


@cache
def fitter(face: Font) -> Fitter:
    """The shared fitter of ``face`` (its advance cache lives as long as the font)."""
    return Fitter(face)


def clean(text: str) -> str:
    """At most :data:`MAX_CHARS` printable characters: controls and invisible marks removed.

    Composed first (NFC), so "s" + combining cedilla shows as one "ş".
    """
    head = unicodedata.normalize("NFC", text[:MAX_CHARS * 2])
    shown = "".join(char if char.isprintable() else " " for char in head
                    if unicodedata.category(char) not in ("Cf", "Mn", "Me"))
    return " ".join(shown.split())[:MAX_CHARS]
