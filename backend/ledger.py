"""The reference backend's ledger: points per member and every visit, in SQLite.

Points are credited once per ``event_id`` (kiosks deliver at least once); a member's
standing — tier, progress to the next reward, what a visit won — follows from the
balance. The database is the backend's own: it shares nothing with a kiosk's.
"""

from __future__ import annotations

import sqlite3
import threading
import time
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


class Ledger:
    """Points per member and every visit, deduplicated on ``event_id``. Thread-safe."""

    def __init__(self, path: Path, points_per_visit: int = 10) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()
        self.points_per_visit = points_per_visit

    def credit(self, checkin: CheckIn, replayed: bool) -> tuple[MemberStatus, bool]:
        """Record a visit once; returns the member's standing and whether it was new."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                new = self._conn.execute(
                    "INSERT OR IGNORE INTO visits VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (checkin.event_id, checkin.member_id, checkin.device_id, checkin.boot_id,
                     checkin.seq, checkin.captured_at, time.time(), int(replayed)),
                ).rowcount == 1
                if new:
                    self._conn.execute(
                        "INSERT INTO accounts VALUES (?, ?, 1) ON CONFLICT(member_id) DO UPDATE "
                        "SET balance = balance + excluded.balance, visits = visits + 1",
                        (checkin.member_id, self.points_per_visit),
                    )
                balance, visits = self._conn.execute(
                    "SELECT balance, visits FROM accounts WHERE member_id = ?",
                    (checkin.member_id,)).fetchone()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        earned = self.points_per_visit if new else 0
        return standing(checkin.member_id, balance, earned, visits), new

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
