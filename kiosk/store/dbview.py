"""The state database seen from outside the daemon, read-only: for ``kiosk doctor`` and
``kiosk status`` (the Pi install has no ``sqlite3`` command).

It never creates, repairs or write-locks the file, so it is safe next to a
running kiosk; a database it cannot open is reported, never moved aside.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class DbFacts:
    """What the database says about the kiosk's recent work."""

    verdict: str
    """``PRAGMA quick_check``: "ok" for a healthy file."""
    waiting: int
    oldest_waiting_at: float | None
    newest_waiting_at: float | None
    last_reply_at: float | None


def read(path: Path) -> DbFacts:
    """Read ``path`` without writing to it; raises ``sqlite3.Error`` or ``FileNotFoundError``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such database")
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=2.0)
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        waiting, oldest, newest = conn.execute(
            "SELECT COUNT(*), MIN(stored_at), MAX(stored_at) FROM outbox").fetchone()
        last_reply = conn.execute("SELECT MAX(updated_at) FROM members").fetchone()[0]
    finally:
        conn.close()
    return DbFacts(verdict, waiting, oldest, newest, last_reply)


def ago(seconds: float) -> str:
    """``42 s ago``, ``12 min ago``, ``3.5 h ago``."""
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
