"""The reference backend's ledger: points per member and every visit, in SQLite.

Points are credited once per ``event_id`` (kiosks deliver at least once); a member's
standing — tier, progress to the next reward, what a visit won — follows from the
balance. Check-ins it will never credit are kept too, with the reason, so a refusal
is as durable as a credit (the kiosk deletes its row on either). The database is the
backend's own: it shares nothing with a kiosk's.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kiosk.mqtt.protocol import CheckIn, MemberStatus

TIERS = ((300, "Gold"), (100, "Silver"), (0, "Bronze"))
REWARD_EVERY = 50
REWARD = "Free coffee"

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    member_id TEXT PRIMARY KEY,
    balance   INTEGER NOT NULL,
    visits    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS visits (
    event_id    TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    boot_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    captured_at REAL NOT NULL,
    received_at REAL NOT NULL,
    replayed    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refusals (
    event_id    TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_at REAL NOT NULL
);
"""


def display_name(member_id: str) -> str:
    """A friendly name from the id (``LOY-ALICE01`` -> ``Alice``); a real backend has names."""
    letters = "".join(ch for ch in member_id.split("-")[-1] if ch.isalpha())
    return letters.capitalize()[:12]


def tier_of(balance: int) -> str:
    """The tier ``balance`` points reach."""
    return next(name for floor, name in TIERS if balance >= floor)


def badge_for(visits: int) -> str:
    """A badge for the first visit and every tenth one."""
    if visits == 1:
        return "First visit"
    return f"{visits} visits" if visits % 10 == 0 else ""


def standing(member_id: str, balance: int, earned: int = 0, visits: int = 0) -> MemberStatus:
    """Tier and progress for ``balance`` points, and what a visit that ``earned`` points won."""
    tier = tier_of(balance)
    into = balance % REWARD_EVERY
    unlocked = earned > 0 and (balance - earned) // REWARD_EVERY < balance // REWARD_EVERY
    return MemberStatus(
        display_name=display_name(member_id), balance=balance, tier=tier,
        points_to_next=REWARD_EVERY - into, progress=into / REWARD_EVERY,
        reward_unlocked=REWARD if unlocked else "", next_reward=REWARD,
        points_earned=earned, tier_changed=earned > 0 and tier_of(balance - earned) != tier,
        badge=badge_for(visits) if earned else "",
    )


def connect(path: Path) -> sqlite3.Connection:
    """The ledger's database, created if missing: durable (WAL, ``synchronous=FULL``: a
    credit is on disk before its reply is sent) and in autocommit mode; usable from any
    thread, as paho's and the caller's both use it (the ledger serialises access)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(LEDGER_SCHEMA)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


@dataclass(frozen=True)
class Refusal:
    """A check-in that will never be credited: kept with why, and what it said."""

    event_id: str
    device_id: str
    reason: str
    payload: bytes


Credited = tuple[MemberStatus, bool]
"""A member's standing after a visit, and whether the visit was new (not a duplicate)."""


class Ledger:
    """Points per member and every visit, deduplicated on ``event_id``. Thread-safe."""

    def __init__(self, path: Path, points_per_visit: int = 10) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()
        self.points_per_visit = points_per_visit

    def credit(self, checkin: CheckIn, replayed: bool) -> Credited:
        """Record a visit once; returns the member's standing and whether it was new."""
        return self.record([(checkin, replayed)], [])[0]

    def record(self, visits: list[tuple[CheckIn, bool]],
               refusals: list[Refusal]) -> list[Credited]:
        """Record visits (each once) and refusals in one transaction: one disk sync for a
        batch, which is what lets a backend keep up with a fleet draining its backlogs.
        Returns each visit's standing and whether it was new, in order."""
        now = time.time()
        results: list[Credited] = []
        earned = self.points_per_visit
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for checkin, replayed in visits:
                    new = self._conn.execute(
                        "INSERT OR IGNORE INTO visits VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (checkin.event_id, checkin.member_id, checkin.device_id,
                         checkin.boot_id, checkin.seq, checkin.captured_at, now, int(replayed)),
                    ).rowcount == 1
                    if new:
                        self._conn.execute(
                            "INSERT INTO accounts VALUES (?, ?, 1) ON CONFLICT(member_id) DO "
                            "UPDATE SET balance = balance + excluded.balance, "
                            "visits = visits + 1", (checkin.member_id, earned))
                    balance, count = self._conn.execute(
                        "SELECT balance, visits FROM accounts WHERE member_id = ?",
                        (checkin.member_id,)).fetchone()
                    results.append((standing(checkin.member_id, balance, earned * new, count),
                                    new))
                self._conn.executemany(
                    "INSERT OR IGNORE INTO refusals VALUES (?, ?, ?, ?, ?)",
                    [(r.event_id, r.device_id, r.reason, r.payload, now) for r in refusals])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return results

    def refusals(self) -> list[Refusal]:
        """Every check-in refused for good, oldest first (for staff to look at)."""
        with self._lock:
            rows = self._conn.execute("SELECT event_id, device_id, reason, payload "
                                      "FROM refusals ORDER BY received_at").fetchall()
        return [Refusal(*row) for row in rows]

    def visits(self, device_id: str) -> list[tuple[str, int, str, bool]]:
        """``(event_id, seq, member_id, replayed)`` of a kiosk's visits, in arrival order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id, seq, member_id, replayed FROM visits WHERE device_id = ? "
                "ORDER BY rowid", (device_id,)).fetchall()
        return [(event_id, seq, member, bool(replayed)) for event_id, seq, member, replayed in rows]

    def balance(self, member_id: str) -> int:
        """Current points of ``member_id`` (0 when never seen)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT balance FROM accounts WHERE member_id = ?", (member_id,)).fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()
