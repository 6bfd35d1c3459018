"""Member cache: the last status the backend reported for each member.

Offline, the customer still sees their last known balance. The cache is kept
in SQLite so it survives restarts, and bounded so it cannot grow without end.
"""

from __future__ import annotations

import json
import sqlite3
import time

from kiosk.counter.members import MemberStatus
from kiosk.store.db import light_transaction

PRUNE_EVERY = 1000
"""Trim the cache once per this many updates, not on every reply: a trim sorts the whole
table, and a rush of new members would otherwise pay for one every few turns."""


class MemberCache:
    """Last known :class:`MemberStatus` per member id; about ``max_members`` kept.

    Between trims the table may hold up to ``PRUNE_EVERY`` members more.
    """

    def __init__(self, conn: sqlite3.Connection, max_members: int = 5000) -> None:
        self._conn = conn
        self._max = max_members
        self._updates = 0

    def load(self) -> dict[str, MemberStatus]:
        """Every cached member, for the controller to hold in memory."""
        rows = self._conn.execute("SELECT member_id, status FROM members").fetchall()
        known = {}
        for member_id, text in rows:
            try:
                known[member_id] = MemberStatus(**json.loads(text))
            except (TypeError, ValueError):
                continue  # written by another version: it will be refreshed on the next visit
        return known

    def put(self, member_id: str, status: MemberStatus) -> None:
        """Remember ``status``; now and then forget the members seen longest ago."""
        self.put_many([(member_id, status)])

    def put_many(self, standings: list[tuple[str, MemberStatus]]) -> None:
        """Remember each member's status, in one transaction without a disk sync (a power
        cut may bring back an older balance, never a wrong one): a drain's replies cost one
        commit, not one sync each."""
        now = time.time()
        with light_transaction(self._conn):
            self._conn.executemany(
                "INSERT OR REPLACE INTO members (member_id, status, updated_at) "
                "VALUES (?, ?, ?)",
                [(member_id, json.dumps(vars(status.standing())), now)  # flat: no deep copy
                 for member_id, status in standings])
        before, self._updates = self._updates, self._updates + len(standings)
        if before // PRUNE_EVERY != self._updates // PRUNE_EVERY:
            self.prune()

    def prune(self) -> None:
        """Keep only the ``max_members`` members seen most recently.

        Without a sort: SQLite gives an inserted row the table's largest rowid plus one
        (https://sqlite.org/autoinc.html), and ``INSERT OR REPLACE`` deletes the old row
        and inserts anew, so rowid order is update order. The cutoff is found by walking
        the table's own b-tree from its end; sorting the table by ``updated_at`` cost a
        rush 16 ms a trim.
        """
        self._conn.execute(
            "DELETE FROM members WHERE rowid < "
            "(SELECT rowid FROM members ORDER BY rowid DESC LIMIT 1 OFFSET ?)", (self._max - 1,)
        )

    def clear(self) -> int:
        """Forget every member (staff's ``flush-cache``); how many there were."""
        return self._conn.execute("DELETE FROM members").rowcount
