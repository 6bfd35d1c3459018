"""An 80x24 terminal for the demo's tests: just the escape sequences the demo writes."""

from __future__ import annotations

import io
import re


class Terminal(io.StringIO):
    """An 80x24 terminal, as far as the demo drives one: it reports a tty, and
    :meth:`screen` replays what was written, failing on anything that would scroll
    or wrap (a frame that does not fit piles up on a real terminal)."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        rows = [[" "] * 80 for _ in range(24)]
        row = col = 0
        for token in re.findall(r"\x1b\[\d*[HKJ]|\n|[^\x1b\n]", self.getvalue()):
            if token in ("\x1b[H", "\x1b[2J"):
                row = col = 0 if token == "\x1b[H" else row
                rows = rows if token == "\x1b[H" else [[" "] * 80 for _ in range(24)]
            elif token == "\x1b[K":
                rows[row][col:] = [" "] * (80 - col)
            elif token == "\x1b[J":
                rows[row][col:] = [" "] * (80 - col)
                rows[row + 1:] = [[" "] * 80 for _ in range(23 - row)]
            elif token == "\n":
                row, col = row + 1, 0
                assert row < 24, "the terminal scrolled"
            else:
                assert col < 79, "a line reached the last column"
                rows[row][col] = token
                col += 1
        return ["".join(line).rstrip() for line in rows]
