"""Logging for a daemon under journald: one line per record on stdout, member codes hashed,
repeated errors rate-limited.

An unplugged scanner or an unreachable broker fails the same way every few
seconds for hours; the journal on an SD card should show the first few
failures and then a count, not fill up. A member code must never reach the
journal in clear, whatever path a message took (an exception's text, a
malformed payload): every message is scrubbed with the member pattern.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from kiosk.counter.members import CARD_PREFIX, TAG_ID, redact, use_log_key

BURST = 5
"""Identical warnings or errors logged in full per window before they are only counted."""
WINDOW_S = 300.0
HANDLER_NAME = "kiosk"
"""The name of the one handler :func:`setup` installs on the root logger."""

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}


@dataclass
class _Seen:
    window_start: float
    count: int = 0
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Lets through ``burst`` records of one kind (logger, level, message template) per
    ``window_s``; counts the rest and says how many were held back on the next one it lets
    through, or when the window ends (:meth:`summaries`). Below WARNING nothing is held back.
    """

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], _Seen] = {}
        self.held_back = 0
        """Lines held back since start (``tele/health``'s ``log_lines_held_back``)."""

    def summaries(self, now: float) -> list[tuple[int, str, int]]:
        """``(level, template, count)`` of each kind whose window has ended with lines held
        back; they are forgotten, so each held-back line is told of once."""
        ended = [(key, seen) for key, seen in self._seen.items()
                 if seen.suppressed and now - seen.window_start >= self.window_s]
        for key, _seen in ended:
            del self._seen[key]
        return [(level, template, seen.suppressed) for (_name, level, template), seen in ended]

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record to hold back; annotates the first record of a new window."""
        if record.levelno < logging.WARNING or getattr(record, _SUMMARY, False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        seen = self._seen.get(key)
        if seen is None or record.created - seen.window_start >= self.window_s:
            held = seen.suppressed if seen else 0
            seen = self._seen[key] = _Seen(record.created)
            if held:
                record.msg = f"{record.msg} [{held} more like this held back]"
        seen.count += 1
        if seen.count > self.burst:
            seen.suppressed += 1
            self.held_back += 1
            return False
        if seen.count == self.burst:
            record.msg = (f"{record.msg} [repeated {self.burst} times; more are held back for "
                          f"{self.window_s:.0f} s]")
        return True


_SUMMARY = "kiosk_held_back_summary"
"""Marks the line that says how many lines were held back: it is never held back itself."""


def _repeat_filter() -> RepeatFilter | None:
    for handler in logging.getLogger().handlers:
        if handler.get_name() == HANDLER_NAME:
            for found in handler.filters:
                if isinstance(found, RepeatFilter):
                    return found
    return None


def report_held_back(now: float | None = None) -> None:
    """Log how many lines of each kind were held back in windows that have ended, so no
    refusal is hidden silently when no line of its kind follows. The daemon calls this
    every tick; without :func:`setup` it does nothing."""
    repeat = _repeat_filter()
    if repeat is None:
        return
    for level, template, count in repeat.summaries(time.time() if now is None else now):
        logging.getLogger(__name__).log(
            level, "%d more lines like this were held back in the last %.0f s: %s", count,
            repeat.window_s, template, extra={_SUMMARY: True})


def held_back() -> int:
    """Log lines held back since start (0 without :func:`setup`)."""
    repeat = _repeat_filter()
    return 0 if repeat is None else repeat.held_back


class MemberScrubber(logging.Filter):
    """Replaces anything that looks like a member code in a message by its short hash: a
    plain id matching the member pattern (``""``: there is none), a tag id, a signed card."""

    def __init__(self, member_pattern: str) -> None:
        super().__init__()
        kinds = [re.escape(CARD_PREFIX) + r"\S+", TAG_ID.pattern]
        if member_pattern:
            kinds.append(f"(?:{member_pattern})")
        self._pattern = re.compile("|".join(kinds))

    def filter(self, record: logging.LogRecord) -> bool:
        """Formats the message once, scrubbed; the record then carries no arguments."""
        message = record.getMessage()
        scrubbed = self._pattern.sub(_redacted, message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._pattern.sub(_redacted, record.exc_text)
        record.msg, record.args = scrubbed, None
        return True


def _redacted(match: re.Match[str]) -> str:
    # A pattern that also matches nothing (``[0-9]*``) must not hash the gap between letters.
    return redact(match.group(0)) if match.group(0) else ""


class _JournalFormatter(logging.Formatter):
    """``<priority>logger: message``: journald reads the priority prefix and adds the time."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def setup(level: str, member_pattern: str, stream: TextIO | None = None,
          key: bytes | None = None) -> logging.Handler:
    """Send every record to stdout at ``level`` (any case), scrubbed and rate-limited;
    member hashes keyed with ``key`` (the install's, :func:`kiosk.store.statedir.log_key`).

    Under systemd (``JOURNAL_STREAM`` set) lines carry syslog priorities for
    ``journalctl -p``; elsewhere they carry a timestamp.
    """
    if key is not None:
        use_log_key(key)
    handler = logging.StreamHandler(stream or sys.stdout)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())  # first: it tells records apart by their template
    handler.addFilter(MemberScrubber(member_pattern))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    # Set up again in the same process (``kiosk.cli.main`` called twice, as tests and
    # integrators do): the new handler replaces the old one. Two would print every line
    # twice, and the first one's filters would rewrite the records the second one sees.
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("PIL").setLevel(logging.WARNING)
    return handler
