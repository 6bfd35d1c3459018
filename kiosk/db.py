"""The kiosk's one SQLite database: outbox, member cache, staff sequence numbers.

WAL with ``synchronous=FULL``: a row is on the SD card when ``INSERT``
returns, and survives a power cut or ``kill -9``. A database that fails
``quick_check`` at start is moved aside (kept for inspection) and a fresh one
is started, so a corrupt file never keeps a kiosk from taking check-ins.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id  TEXT NOT NULL UNIQUE,
    payload   BLOB NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    member_id  TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS staff_seq (
    key_id      TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    cmd_id      TEXT NOT NULL,
    accepted_at REAL NOT NULL
);
"""


def connect(path: Path, shared: bool = False) -> sqlite3.Connection:
    """Open ``path`` durable and in autocommit mode (each statement is its own transaction).

    ``shared`` lets other threads use the connection; the caller then serialises access.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=not shared)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def open_db(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """Open (creating or repairing) the state database.

    Returns the connection and, when the old file was unusable, where it was moved.
    The connection is opened by whoever builds the app and then used only by the
    controller thread, so it is opened ``shared``.
    """
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    _create_private(path)
    moved: str | None = None
    conn = sqlite3.connect(":memory:")  # replaced below; keeps the type simple
    try:
        conn = connect(path, shared=True)
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        verdict = str(exc)
    if verdict != "ok":
        conn.close()
        moved = f"{path}.corrupt-{int(time.time())}"
        log.error("state database %s failed its check (%s); moved to %s, starting fresh",
                  path, verdict, moved)
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{path}{suffix}")
            if old.exists():
                old.rename(f"{moved}{suffix}")
        _create_private(path)
        conn = connect(path, shared=True)
    conn.executescript(SCHEMA)
    return conn, moved


def _create_private(path: Path) -> None:
    """Create an empty database file only its owner and group may read: it holds member
    data. SQLite gives ``-wal`` and ``-shm`` the database file's own mode."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
