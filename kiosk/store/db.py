"""The kiosk's one SQLite database: outbox, member cache, recent scans, staff sequence numbers.

WAL with ``synchronous=FULL``: a row is on the SD card when ``INSERT``
returns, and survives a power cut or ``kill -9``.

Only *real* corruption (SQLite says ``SQLITE_CORRUPT``/``SQLITE_NOTADB``, or
``quick_check`` fails) moves a database aside — and then its readable outbox
rows are salvaged into the fresh one (:mod:`kiosk.store.salvage`), so the
visits waiting in it are still delivered. A database that is merely locked (an
operator's ``sqlite3`` session, a backup) is waited for, up to a minute, until
the kiosk could write to it; one that cannot be opened (permissions, a
read-only filesystem) stops start-up with one clear line. Neither is ever
discarded. On a full disk the database is opened all the same, so the visits
it holds are delivered while new ones are refused (see :func:`open_db`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiosk import KioskError
from kiosk.store import salvage

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
CREATE TABLE IF NOT EXISTS day_counts (
    day      TEXT PRIMARY KEY,
    checkins INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS salvaged (
    file     TEXT PRIMARY KEY,
    last_row INTEGER NOT NULL,
    rows     INTEGER NOT NULL
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


def connect(path: Path, shared: bool = False, exclusive: bool = False) -> sqlite3.Connection:
    """Open ``path`` durable and in autocommit mode (each statement is its own transaction).

    ``shared`` lets other threads use the connection; the caller then serialises access.
    ``exclusive`` keeps WAL's index in this process's memory instead of the ``-shm`` file
    (which a full disk cannot hold), and shuts every other program out until it closes.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=not shared)
    try:
        if exclusive:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL is first used
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


@contextmanager
def light_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A :func:`transaction` without a disk sync at its commit (``synchronous=NORMAL``), for
    writes a power cut may undo harmlessly: a deleted row comes back and is sent again, a
    cached balance is an older one. One sync per such write was most of a drain's time."""
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        with transaction(conn):
            yield
    finally:
        conn.execute("PRAGMA synchronous=FULL")


def _code(exc: sqlite3.Error) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF  # primary code, without the extended bits


def open_db(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """Open (creating, or repairing real corruption of) the state database.

    Returns the connection and, when the old file was corrupt, where it was moved.
    Raises :class:`StorageError` when the database cannot be used and must not be
    touched. The connection is opened by whoever builds the app and then used only
    by the controller thread, so it is opened ``shared``.

    A lock is waited for until the database could be written (up to :data:`LOCK_WAIT_S`),
    so start-up never fails half-way on SQLite's own 5 s busy timeout. A disk too full
    even for WAL's ``-shm`` file opens the database :func:`exclusive <connect>`
    (:func:`opened_on_full_disk` says so): stored visits can still be read and sent.
    """
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        _create_private(path)
    except OSError as exc:
        raise StorageError(f"cannot create state database {path}: {exc.strerror}") from None
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            try:
                return _open_checked(path)
            except sqlite3.Error as exc:
                if not _disk_full(exc):
                    raise
                log.error("state database %s: the disk is full (%s); opening it for this "
                          "process alone so the visits it holds are still delivered", path, exc)
                return _open_checked(path, exclusive=True)
        except sqlite3.Error as exc:
            if _code(exc) in _BUSY or "locked" in str(exc):
                if time.monotonic() < deadline:
                    log.warning("state database %s is locked by another program; waiting", path)
                    time.sleep(0.5)
                    continue
                raise StorageError(f"state database {path} is locked by another program "
                                   f"(an open sqlite3 session or a backup?)") from None
            raise StorageError(f"cannot open state database {path}: {exc}") from None


def opened_on_full_disk(conn: sqlite3.Connection) -> bool:
    """True when :func:`open_db` had to open the database exclusive because the disk was full:
    other programs (``kiosk status``) cannot read it until the kiosk opens it again."""
    return bool(conn.execute("PRAGMA locking_mode").fetchone()[0] == "exclusive")


def _disk_full(exc: sqlite3.Error) -> bool:
    # A full disk fails the first write (SQLITE_FULL) or, before that, the mapping of WAL's
    # -shm file (SQLITE_IOERR_SHMSIZE: SQLite writes a byte into each new page of it).
    return _code(exc) == sqlite3.SQLITE_FULL or getattr(exc, "sqlite_errorcode", 0) in (
        sqlite3.SQLITE_IOERR_SHMSIZE, sqlite3.SQLITE_IOERR_SHMMAP)


def _open_checked(path: Path, exclusive: bool = False) -> tuple[sqlite3.Connection, str | None]:
    try:
        conn = connect(path, shared=True, exclusive=exclusive)
    except sqlite3.DatabaseError as exc:
        if _code(exc) not in _CORRUPT:
            raise
        return _replace_corrupt(path, str(exc))
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        if verdict == "ok":
            # Taking the write lock here is what waits for another program's write (or
            # backup) to end; with every table there already, it writes nothing.
            conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
            return conn, None
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if _code(exc) not in _CORRUPT:
            conn.close()
            raise
        verdict = str(exc)
    conn.close()
    return _replace_corrupt(path, verdict)


def _replace_corrupt(path: Path, verdict: str) -> tuple[sqlite3.Connection, str]:
    """Move the corrupt files aside and start a fresh database holding what they still had.

    When the fresh one cannot be made (a full disk), the old files are put back: the next
    start salvages them, instead of finding an empty database beside a file nobody reads.
    """
    moved = f"{path}.corrupt-{int(time.time())}"
    suffixes = [suffix for suffix in ("", "-wal", "-shm") if Path(f"{path}{suffix}").exists()]
    for suffix in suffixes:
        Path(f"{path}{suffix}").rename(f"{moved}{suffix}")
    conn: sqlite3.Connection | None = None
    try:
        _create_private(path)
        conn = connect(path, shared=True)
        conn.executescript(SCHEMA)
        saved = _salvage(Path(moved), conn)
    except (sqlite3.Error, OSError):
        if conn is not None:
            conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        for suffix in suffixes:
            Path(f"{moved}{suffix}").rename(f"{path}{suffix}")
        raise
    log.error("state database %s failed its check (%s); moved to %s, started fresh with "
              "%d waiting check-ins salvaged", path, verdict, moved, saved)
    return conn, moved


def _create_private(path: Path) -> None:
    """Create an empty database file only its owner and group may read: it holds member
    data. SQLite gives ``-wal`` and ``-shm`` the database file's own mode."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))


def _salvage(corrupt: Path, into: sqlite3.Connection) -> int:
    """Copy every outbox row still readable in ``corrupt`` into ``into``, in order, and note
    where they came from (:class:`~kiosk.store.salvage.Salvaged`) in the same transaction."""
    rows = salvage.read_outbox(corrupt)  # an OSError puts the files back (see above)
    if not rows:
        return 0
    with transaction(into):
        into.executemany("INSERT OR IGNORE INTO outbox (event_id, payload, stored_at) "
                         "VALUES (?, ?, ?)", rows)
        into.execute("INSERT INTO salvaged (file, last_row, rows) "
                     "SELECT ?, MAX(id), COUNT(*) FROM outbox", (str(corrupt),))
    return len(rows)
