"""The durable outbox: every check-in is committed here before the customer is told.

Rows leave the outbox only when the broker has acknowledged them (PUBACK), so a
dead network, a vanished broker or a ``kill -9`` cannot lose a visit. When the
outbox is full it refuses new check-ins loudly instead of dropping old ones.
"""

from __future__ import annotations

import sqlite3
import time

from kiosk import KioskError


class OutboxError(KioskError):
    """A check-in could not be stored; the message says why in a few words."""


class Outbox:
    """Ordered, bounded queue of encoded check-ins in SQLite. Owned by one thread."""

    def __init__(self, conn: sqlite3.Connection, max_rows: int) -> None:
        self._conn = conn
        self._max_rows = max_rows
        self.depth = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def add(self, event_id: str, payload: bytes) -> int:
        """Commit one check-in (durable on return) and give its row id."""
        if self.depth >= self._max_rows:
            raise OutboxError("outbox full")
        try:
            cursor = self._conn.execute(
                "INSERT INTO outbox (event_id, payload, stored_at) VALUES (?, ?, ?)",
                (event_id, payload, time.time()),
            )
        except sqlite3.Error as exc:  # disk full, read-only, I/O error
            raise OutboxError(f"storage error: {exc}") from exc
        self.depth += 1
        return int(cursor.lastrowid or 0)  # always set after an INSERT

    def after(self, row_id: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` rows with ids above ``row_id``, oldest first."""
        return self._conn.execute(
            "SELECT id, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (row_id, limit)
        ).fetchall()

    def remove(self, row_id: int) -> None:
        """Delete a row the broker has acknowledged."""
        cursor = self._conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        self.depth -= cursor.rowcount

    def oldest_age(self) -> float:
        """Seconds since the oldest waiting check-in was stored (0 when empty)."""
        row = self._conn.execute("SELECT MIN(stored_at) FROM outbox").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - row[0])
