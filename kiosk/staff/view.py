"""How kioskctl shows what kiosks say to a person: printable text, tables that fit, summaries.

Everything a kiosk publishes is text its certificate chose: a kiosk (or whoever holds
its key) could put terminal escape sequences in its retained ``status``, ``state`` or
health report, hide other rows (SGR 8), move the cursor, retitle the window, or add a
fake kiosk row with a newline. So every text from a kiosk passes :func:`printable`
before it reaches a terminal: control and format characters (C0, C1, DEL, bidi
overrides, line separators) are shown escaped, and long texts are cut. ``--json``
output needs no such care: JSON escapes control characters itself.
"""

from __future__ import annotations

import shutil
import time
import unicodedata
from typing import Any

from kiosk.mqtt.protocol import Leaf

WIDTH = 80
"""Tables fit this many columns when the terminal's width is unknown (a pipe)."""
MIN_COLUMN = 5


def printable(value: Any, limit: int = 200) -> str:
    """``value`` as text safe to print on a terminal: one line, no control characters."""
    text = value if isinstance(value, str) else str(value)
    shown = "".join(_escaped(char) for char in text[:limit * 2])
    return shown if len(shown) <= limit else shown[:limit - 1] + "…"


def _escaped(char: str) -> str:
    if unicodedata.category(char)[0] != "C" and unicodedata.category(char) not in ("Zl", "Zp"):
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def table(rows: list[list[str]], width: int | None = None) -> str:
    """Rows as aligned columns, every cell printable, fitted to ``width`` (the terminal's,
    else 80): columns two spaces apart, else one; then the widest columns but the first
    (the kiosk's id, which people copy) give way, their cut cells ending in ``…``."""
    width = width or shutil.get_terminal_size((WIDTH, 24)).columns
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    gap = 2 if sum(widths) + 2 * (len(widths) - 1) <= width else 1
    while sum(widths) + gap * (len(widths) - 1) > width:
        others = widths[1:] if max(widths[1:], default=0) > MIN_COLUMN else widths
        widest = max(others)
        if widest <= MIN_COLUMN:
            break
        widths[len(widths) - len(others) + others.index(widest)] -= 1
    return "\n".join((" " * gap).join(_cut(cell, size).ljust(size)
                                      for cell, size in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def _cut(cell: str, size: int) -> str:
    return cell if len(cell) <= size else cell[:size - 1] + "…"


def span(seconds: float) -> str:
    """A duration as people read it: ``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def ago(when: float | None) -> str:
    """How long ago a kiosk's timestamp was, or ``-``."""
    return "-" if when is None else f"{span(time.time() - when)} ago"


SUMMARY_HEALTH = (("uptime_s", "uptime", span), ("outbox_depth", "outbox", str),
                  ("awaiting_backend", "awaiting backend", str),
                  ("awaiting_oldest_s", "oldest awaiting", span), ("checkins", "check-ins", str),
                  ("checkins_today", "check-ins today", str), ("scans", "scans", str),
                  ("bad_messages", "bad messages", str), ("cpu_temp_c", "CPU", str))
"""The health figures ``kioskctl show`` prints (``--json`` prints every one)."""


def summary(shown: dict[str, Any]) -> str:
    """One kiosk's retained messages (``fleet.details``) as a short readable summary."""
    lines = [("kiosk", f"{shown.get('device_id')} (site {shown.get('site')})"),
             ("status", shown.get("status", "?"))]
    state = shown.get(Leaf.STATE)
    if isinstance(state, dict):
        reason = f" ({state['reason']})" if state.get("reason") else ""
        lines += [("state", f"{state.get('state', '?')}{reason}"),
                  ("firmware", state.get("firmware", "?"))]
        release = state.get("release")
        if isinstance(release, dict):
            lines.append(("release", release_text(release)))
            if isinstance(failure := release.get("last_failure"), dict):
                lines.append(("last failure", _version_why(failure)))
    reported = shown.get(Leaf.CONFIG_REPORTED)
    if isinstance(reported, dict):
        lines.append(("config", f"version {reported.get('version', '?')}"))
        if isinstance(rejected := reported.get("rejected"), dict):
            lines.append(("last refused", f"version {_version_why(rejected)}"))
    health = shown.get(Leaf.HEALTH)
    if isinstance(health, dict):
        lines.append(("last report", ago(_number(health.get("sent_at")))))
        problems = health.get("problems")
        if isinstance(problems, list) and problems:
            lines.append(("problems", "; ".join(printable(p, 80) for p in problems[:10])))
        for key, label, form in SUMMARY_HEALTH:
            value = health.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                lines.append((label, form(value)))
    if shown.get(Leaf.ENROLL):
        lines.append(("enrollment", "waiting to be enrolled (pairing code on its screen)"))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label + ':':<{width + 1}} {printable(value)}" for label, value in lines)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _version_why(said: dict[str, Any]) -> str:
    """``<version>: <reason>`` of a refusal or failure a kiosk reported."""
    return f"{said.get('version', '?')}: {said.get('reason', '')}"


def release_text(release: dict[str, Any]) -> str:
    """``0.2.0``, ``0.2.0, trying 0.3.0`` or ``0.2.0 (0.3.0 failed)``: what runs and what
    is happening to it, in one column."""
    text = str(release.get("running", "?"))
    if release.get("trying"):
        text += f", trying {release['trying']}"
    failure = release.get("last_failure")
    if isinstance(failure, dict):
        text += f" ({failure.get('version', '?')} failed)"
    return text
