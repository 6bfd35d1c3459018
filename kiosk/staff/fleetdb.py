"""The fleet service's own SQLite database: the fleet's current state, the audit log, results.

``heard``     the newest message per topic (every kiosk's retained messages and health,
              the rollout records) and when it came: the fleet's current state, kept
              across restarts of the service (the broker sends retained ones again anyway).
``orders``    every staff order heard, once each (by the digest of its bytes), verified or
              not (:mod:`kiosk.staff.audit`).
``outcomes``  what each kiosk said to an order: a command's result, a config applied,
              refused or rolled back, once each.

``orders`` and ``outcomes`` are **append-only**: triggers refuse every UPDATE and DELETE,
so the log cannot be edited through the database's own interface. Written in WAL mode by
one thread in batches (one commit per batch of messages, not one per message).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kiosk.staff.audit import Order, Outcome
from kiosk.staff.kinds import order_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS heard (
    topic TEXT PRIMARY KEY, payload BLOB NOT NULL, heard_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    n INTEGER PRIMARY KEY, digest TEXT NOT NULL UNIQUE, heard_at REAL NOT NULL,
    topic TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL,
    cmd_id TEXT NOT NULL, seq INTEGER NOT NULL, key_id TEXT NOT NULL, signer TEXT NOT NULL,
    verified INTEGER NOT NULL, problem TEXT NOT NULL, args TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS orders_at ON orders (heard_at);
CREATE INDEX IF NOT EXISTS orders_cmd ON orders (cmd_id);
CREATE TABLE IF NOT EXISTS outcomes (
    n INTEGER PRIMARY KEY, digest TEXT NOT NULL UNIQUE, heard_at REAL NOT NULL,
    site TEXT NOT NULL, device_id TEXT NOT NULL, cmd_id TEXT NOT NULL,
    outcome TEXT NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outcomes_cmd ON outcomes (cmd_id);
CREATE INDEX IF NOT EXISTS outcomes_device ON outcomes (device_id);
"""
APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
MAX_ROWS = 10_000
"""Orders one audit query returns at most (newest first)."""


class FleetStore:
    """One connection, used by one thread (the service's worker)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA + APPEND_ONLY.format(table="orders")
                                + APPEND_ONLY.format(table="outcomes"))

    def close(self) -> None:
        self.conn.close()

    def remember(self, topic: str, payload: bytes, heard_at: float) -> None:
        """The newest message on ``topic`` (an empty one: the retained message was cleared)."""
        if payload:
            self.conn.execute("INSERT INTO heard VALUES (?, ?, ?) ON CONFLICT(topic) DO UPDATE "
                              "SET payload = excluded.payload, heard_at = excluded.heard_at",
                              (topic, payload, heard_at))
        else:
            self.conn.execute("DELETE FROM heard WHERE topic = ?", (topic,))

    def heard(self) -> dict[str, tuple[bytes, float]]:
        """Everything remembered: topic -> (payload, when)."""
        return {topic: (bytes(payload), at) for topic, payload, at in
                self.conn.execute("SELECT topic, payload, heard_at FROM heard")}

    def add_order(self, payload: bytes, order: Order) -> bool:
        """Log an order once (the same bytes heard again, e.g. retained: not again)."""
        digest = hashlib.sha256(order.topic.encode() + b"\0" + payload).hexdigest()
        fields = asdict(order)
        cursor = self.conn.execute(
            f"INSERT OR IGNORE INTO orders (digest, {', '.join(fields)}) "
            f"VALUES (?{', ?' * len(fields)})", (digest, *fields.values()))
        return cursor.rowcount == 1

    def add_outcome(self, outcome: Outcome) -> None:
        """Log what a kiosk said to an order, once."""
        fields = asdict(outcome)
        key = "\0".join(str(fields[name]) for name in ("site", "device_id", "cmd_id", "outcome",
                                                         "reason"))
        self.conn.execute(
            f"INSERT OR IGNORE INTO outcomes (digest, {', '.join(fields)}) "
            f"VALUES (?{', ?' * len(fields)})",
            (hashlib.sha256(key.encode()).hexdigest(), *fields.values()))

    def commit(self) -> None:
        self.conn.commit()

    def audit(self, device_id: str = "", since: float = 0.0,
              limit: int = MAX_ROWS) -> list[dict[str, Any]]:
        """Orders heard since ``since`` (to ``device_id`` or its site or the fleet, when
        given), newest first, each with what every kiosk said to it."""
        query = "SELECT * FROM orders WHERE heard_at >= ?"
        params: list[Any] = [since]
        if device_id:
            query += (" AND (target GLOB ? OR target GLOB '*/_all' OR cmd_id IN "
                      "(SELECT cmd_id FROM outcomes WHERE device_id = ?))")
            params += [f"*/{device_id}", device_id]  # device ids hold no GLOB characters
        query += " ORDER BY n DESC LIMIT ?"
        self.conn.row_factory = sqlite3.Row
        try:
            orders = [dict(row) for row in self.conn.execute(query, (*params, limit))]
            for order in orders:
                order.pop("digest")
                order["verified"] = bool(order["verified"])
                said = "SELECT site, device_id, outcome, reason, heard_at FROM outcomes " \
                       "WHERE cmd_id = ?" + (" AND device_id = ?" if device_id else "") + \
                       " ORDER BY n"
                order["outcomes"] = [dict(row) for row in self.conn.execute(
                    said, (order["cmd_id"], device_id) if device_id else (order["cmd_id"],))
                    ] if order["cmd_id"] else []
        finally:
            self.conn.row_factory = None
        return orders

    def results(self, rollout_id: str) -> dict[str, dict[str, Any]]:
        """The last command result per order of a rollout (``cmd_id`` ``<id>.<…>``), each
        heard on the topic of the kiosk it was sent to: any kiosk may write its own results,
        and a rollout's order ids can be worked out from kiosk names."""
        found: dict[str, dict[str, Any]] = {}
        for cmd_id, site, device_id, outcome, reason in self.conn.execute(
                "SELECT cmd_id, site, device_id, outcome, reason FROM outcomes "
                "WHERE cmd_id LIKE ? ESCAPE '\\' AND outcome IN ('ok', 'error') ORDER BY n",
                (_like(rollout_id) + ".%",)):
            if cmd_id == order_id(rollout_id, site, device_id):
                found[cmd_id] = {"status": outcome, "error": reason if outcome == "error" else ""}
        return found

    def backup(self, destination: Path) -> None:
        """A consistent copy of the database (SQLite's online backup), while it runs."""
        target = sqlite3.connect(destination)
        try:
            self.conn.backup(target)
        finally:
            target.close()


def _like(text: str) -> str:
    """``text`` as a literal in a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
