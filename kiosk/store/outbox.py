"""The durable outbox: every check-in is committed here before the customer is told.

Rows leave the outbox only when the backend has acknowledged them (after its own
commit), so a dead network, a broker that crashed or dropped its queue, or a
``kill -9`` cannot lose a visit. When the
outbox is full (rows or bytes) it refuses new check-ins loudly instead of
dropping old ones.

Durability is chosen per statement: a check-in is committed with
``synchronous=FULL`` (the customer is told it is saved), while acknowledged
rows are deleted in batches with ``synchronous=NORMAL``: losing such a delete
in a power cut only sends that row again, and the backend deduplicates on
``event_id``. One disk sync per delivered row was most of the drain's time.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Sequence

from kiosk import KioskError
from kiosk.store.db import light_transaction, transaction

ROWS_PER_STATEMENT = 256
"""Rows per multi-row INSERT: 768 parameters, under SQLite's oldest limit of 999.

A rush is stored with one statement per 256 rows instead of one per row: every
statement releases and retakes the GIL, and on a kiosk whose MQTT threads are busy
each retake can wait a switch interval (5 ms). Row ids come back as a range: the
table is ``AUTOINCREMENT`` and this connection holds the write lock, so SQLite numbers
one statement's rows consecutively, ending at ``lastrowid``.
"""

IDS_PER_STATEMENT = 900
"""Ids in one ``IN (...)``: under SQLite's oldest limit of 999 parameters."""

Row = tuple[int, str, bytes]
"""``(row id, event_id, payload)`` of one stored check-in."""


class OutboxError(KioskError):
    """A check-in could not be stored; the message says why in a few words."""


class OutboxFull(OutboxError):
    """The outbox holds as many rows or bytes as config allows."""


class Outbox:
    """Ordered, bounded queue of encoded check-ins in SQLite. Owned by one thread.

    It also remembers when each member last checked in (``recent_scans``), in the
    same transaction as the check-in, so the cooldown survives a restart.
    """

    def __init__(self, conn: sqlite3.Connection, max_rows: int, max_bytes: int = 1 << 40) -> None:
        self._conn = conn
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        rows, size = conn.execute("SELECT COUNT(*), TOTAL(LENGTH(payload)) FROM outbox").fetchone()
        self.depth: int = rows
        self.bytes = int(size)

    def set_limits(self, max_rows: int, max_bytes: int) -> None:
        """New bounds from the next check-in on; rows already stored stay whatever they hold."""
        self._max_rows, self._max_bytes = max_rows, max_bytes

    @property
    def full(self) -> bool:
        """True when the next check-in would be refused."""
        return self.depth >= self._max_rows or self.bytes >= self._max_bytes

    def add(self, event_id: str, payload: bytes) -> int:
        """Commit one check-in (durable on return) and give its row id."""
        return self.add_many([(event_id, payload)], [])[0]

    def add_many(self, checkins: list[tuple[str, bytes]],
                 seen: list[tuple[str, float]]) -> list[int]:
        """Commit check-ins ``(event_id, payload)`` in one transaction, with the members'
        ``(member_id, seen_at)``; durable on return. All or none are stored."""
        size = sum(len(payload) for _, payload in checkins)
        if (self.depth + len(checkins) > self._max_rows
                or self.bytes + size > self._max_bytes):
            raise OutboxFull("outbox full")
        now = time.time()
        try:
            with transaction(self._conn):
                ids = self._insert("INSERT INTO outbox (event_id, payload, stored_at) VALUES ",
                                   [(event_id, payload, now) for event_id, payload in checkins])
                self._insert("INSERT OR REPLACE INTO recent_scans (member_id, seen_at) VALUES ",
                             seen)
                for day, count in Counter(local_day(at) for _member, at in seen).items():
                    self._conn.execute(
                        "INSERT INTO day_counts (day, checkins) VALUES (?, ?) ON CONFLICT(day) "
                        "DO UPDATE SET checkins = checkins + excluded.checkins", (day, count))
        except sqlite3.Error as exc:  # disk full, read-only, locked, I/O error
            raise OutboxError(f"storage error: {exc}") from exc
        self.depth += len(ids)
        self.bytes += size
        return ids

    def _insert(self, head: str, rows: Sequence[tuple[object, ...]]) -> list[int]:
        """Insert ``rows`` with one statement per :data:`ROWS_PER_STATEMENT`; their row ids."""
        ids: list[int] = []
        for first in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[first:first + ROWS_PER_STATEMENT]
            marks = "(" + ",".join("?" * len(chunk[0])) + ")"
            cursor = self._conn.execute(head + ",".join([marks] * len(chunk)),
                                        [value for row in chunk for value in row])
            last = int(cursor.lastrowid or 0)  # always set after an INSERT
            ids.extend(range(last - len(chunk) + 1, last + 1))
        return ids

    def after(self, row_id: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with ids above ``row_id``, oldest first."""
        return self._conn.execute(
            "SELECT id, event_id, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (row_id, limit)).fetchall()

    def stored_at(self, row_id: int) -> float | None:
        """When row ``row_id`` was stored (unix time), or None when it is gone."""
        row = self._conn.execute("SELECT stored_at FROM outbox WHERE id = ?",
                                 (row_id,)).fetchone()
        return None if row is None else float(row[0])

    def with_events(self, event_ids: Sequence[str]) -> list[Row]:
        """The stored rows among ``event_ids`` (one indexed lookup per id), oldest first."""
        rows: list[Row] = []
        for first in range(0, len(event_ids), IDS_PER_STATEMENT):
            chunk = event_ids[first:first + IDS_PER_STATEMENT]
            rows += self._conn.execute(
                "SELECT id, event_id, payload FROM outbox WHERE event_id IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
        return sorted(rows)

    def remove(self, row_ids: Sequence[int]) -> None:
        """Delete rows the backend has acknowledged, in one light transaction. Ids no longer
        stored are skipped.

        Raises :class:`OutboxError` when the disk refuses; the rows are then still there.
        """
        if not row_ids:
            return
        removed = size = 0
        try:
            with light_transaction(self._conn):
                for first in range(0, len(row_ids), IDS_PER_STATEMENT):
                    chunk = row_ids[first:first + IDS_PER_STATEMENT]
                    where = f"id IN ({','.join('?' * len(chunk))})"
                    size += int(self._conn.execute(
                        f"SELECT TOTAL(LENGTH(payload)) FROM outbox WHERE {where}",
                        chunk).fetchone()[0])
                    removed += self._conn.execute(f"DELETE FROM outbox WHERE {where}",
                                                  chunk).rowcount
        except sqlite3.Error as exc:
            raise OutboxError(f"storage error: {exc}") from exc
        self.depth -= removed
        self.bytes -= size

    def oldest_age(self) -> float:
        """Seconds since the oldest waiting check-in was stored (0 when empty).

        The oldest row is the one with the lowest id: one index step, not a scan.
        """
        row = self._conn.execute("SELECT stored_at FROM outbox ORDER BY id LIMIT 1").fetchone()
        return 0.0 if row is None else max(0.0, time.time() - row[0])

    def probe(self) -> None:
        """Store and remove a check-in-sized row: raises :class:`OutboxError` while the disk
        would refuse a check-in, returns once it would take one again."""
        try:
            with transaction(self._conn):
                self._conn.execute("INSERT INTO outbox (event_id, payload, stored_at) "
                                   "VALUES ('~probe', zeroblob(512), 0)")
                self._conn.execute("DELETE FROM outbox WHERE event_id = '~probe'")
        except sqlite3.Error as exc:
            raise OutboxError(f"storage error: {exc}") from exc

    def checkins_on(self, day: str) -> int:
        """Check-ins recorded on ``day`` (:func:`local_day`), counted in the same transaction
        as each check-in, so a restart does not start the day again."""
        row = self._conn.execute("SELECT checkins FROM day_counts WHERE day = ?", (day,)).fetchone()
        return 0 if row is None else int(row[0])

    def recent_scans(self, since: float) -> dict[str, float]:
        """Members who checked in at or after ``since`` (unix time), and when, oldest first.

        Only reads: start-up must not fail on a locked or full disk for housekeeping's sake
        (older times are forgotten later, by :meth:`forget_scans_before`).
        """
        return dict(self._conn.execute(
            "SELECT member_id, seen_at FROM recent_scans WHERE seen_at >= ? ORDER BY seen_at",
            (since,)))

    def forget_scans_before(self, since: float) -> None:
        """Drop the check-in times older than ``since``: their cooldown has passed."""
        try:
            self._conn.execute("DELETE FROM recent_scans WHERE seen_at < ?", (since,))
        except sqlite3.Error as exc:
            raise OutboxError(f"storage error: {exc}") from exc


def local_day(unix_time: float) -> str:
    """The kiosk's local calendar day of ``unix_time``: ``2026-12-03``."""
    return time.strftime("%Y-%m-%d", time.localtime(unix_time))
