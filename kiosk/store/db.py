"""The kiosk's one SQLite database: outbox, member cache, recent scans, staff sequence numbers.

WAL with ``synchronous=FULL``: a row is on the SD card when ``INSERT``
returns, and survives a power cut or ``kill -9``.

Only *real* corruption (SQLite says ``SQLITE_CORRUPT``/``SQLITE_NOTADB``, or
``quick_check`` fails) moves a database aside — and then its readable outbox
rows are salvaged into the fresh one, so the visits waiting in it are still
delivered. A database that is merely locked (an operator's ``sqlite3``
session, a backup) is waited for; one that cannot be opened (permissions, a
read-only filesystem) stops start-up with one clear line. Neither is ever
discarded.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiosk import KioskError

log = logging.getLogger(__name__)

LOCK_WAIT_S = 60.0
"""How long start-up waits for another program to release the database."""

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
CREATE TABLE IF NOT EXISTS recent_scans (
    member_id TEXT PRIMARY KEY,
    seen_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS staff_seq (
    key_id      TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    cmd_id      TEXT NOT NULL,
    accepted_at REAL NOT NULL
);
"""

_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


CACHE_KIB = 512
"""SQLite's page cache per connection. Its default, 2 MiB, fills over a day's check-ins and
stays resident; what the kiosk reads again soon (the newest outbox rows, the recent scans,
cached members) fits in far less, and the rest comes from the OS's file cache."""


class StorageError(KioskError):
    """The state database cannot be used right now; the message is one line for the user."""


def connect(path: Path, shared: bool = False) -> sqlite3.Connection:
    """Open ``path`` durable and in autocommit mode (each statement is its own transaction).

    ``shared`` lets other threads use the connection; the caller then serialises access.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=not shared)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection: all of it is stored, or none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite has already rolled back after some errors
            conn.execute("ROLLBACK")
        raise


def _code(exc: sqlite3.Error) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF  # primary code, without the extended bits


def open_db(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """Open (creating, or repairing real corruption of) the state database.

    Returns the connection and, when the old file was corrupt, where it was moved.
    Raises :class:`StorageError` when the database cannot be used and must not be
    touched. The connection is opened by whoever builds the app and then used only
    by the controller thread, so it is opened ``shared``.
    """
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        _create_private(path)
    except OSError as exc:
        raise StorageError(f"cannot create state database {path}: {exc.strerror}") from None
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return _open_checked(path)
        except sqlite3.Error as exc:
            if _code(exc) in _BUSY or "locked" in str(exc):
                if time.monotonic() < deadline:
                    log.warning("state database %s is locked by another program; waiting", path)
                    time.sleep(0.5)
                    continue
                raise StorageError(f"state database {path} is locked by another program "
                                   f"(an open sqlite3 session or a backup?)") from None
            raise StorageError(f"cannot open state database {path}: {exc}") from None


def _open_checked(path: Path) -> tuple[sqlite3.Connection, str | None]:
    try:
        conn = connect(path, shared=True)
    except sqlite3.DatabaseError as exc:
        if _code(exc) not in _CORRUPT:
            raise
        return _replace_corrupt(path, str(exc))
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        if verdict == "ok":
            conn.executescript(SCHEMA)
            return conn, None
    except sqlite3.DatabaseError as exc:
        if _code(exc) not in _CORRUPT:
            conn.close()
            raise
        verdict = str(exc)
    conn.close()
    return _replace_corrupt(path, verdict)


def _replace_corrupt(path: Path, verdict: str) -> tuple[sqlite3.Connection, str]:
    moved = f"{path}.corrupt-{int(time.time())}"
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            old.rename(f"{moved}{suffix}")
    _create_private(path)
    conn = connect(path, shared=True)
    conn.executescript(SCHEMA)
    saved = _salvage(Path(moved), conn)
    log.error("state database %s failed its check (%s); moved to %s, started fresh with "
              "%d waiting check-ins salvaged", path, verdict, moved, saved)
    return conn, moved


def _create_private(path: Path) -> None:
    """Create an empty database file only its owner and group may read: it holds member
    data. SQLite gives ``-wal`` and ``-shm`` the database file's own mode."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))


def _salvage(corrupt: Path, into: sqlite3.Connection) -> int:
    """Copy every outbox row still readable from ``corrupt`` into ``into``, in order.

    A damaged page ends a scan; the scan then resumes past it, so rows on pages
    after the damage are saved too.
    """
    rows: list[tuple[str, bytes, float]] = []
    try:
        source = sqlite3.connect(f"file:{corrupt}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    last, misses = 0, 0
    with source:
        while misses < 64:
            try:
                cursor = source.execute("SELECT id, event_id, payload, stored_at FROM outbox "
                                        "WHERE id > ? ORDER BY id", (last,))
                for row_id, event_id, payload, stored_at in cursor:
                    rows.append((event_id, payload, stored_at))
                    last = row_id
                break
            except sqlite3.Error:
                misses += 1
                last += 16  # skip past the damaged page's rows and try again
    source.close()
    with into:
        into.executemany("INSERT OR IGNORE INTO outbox (event_id, payload, stored_at) "
                         "VALUES (?, ?, ?)", rows)
    return len(rows)
