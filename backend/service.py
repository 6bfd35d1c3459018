"""The reference loyalty backend: a small, real ledger for the demo, the tests and integrators.

It hears every kiosk's check-ins, credits points once per ``event_id`` (the
kiosk delivers at least once), and answers on the kiosk's ``reply`` topic
with the member's balance, tier and progress to the next reward. A shop's
real backend replaces it by speaking the same protocol.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.counter.checkin import CheckIn
from kiosk.counter.members import MemberStatus, redact
from kiosk.mqtt import protocol
from kiosk.store.db import connect

log = logging.getLogger(__name__)

TIERS = ((300, "Gold"), (100, "Silver"), (0, "Bronze"))
REWARD_EVERY = 50
REWARD = "Free coffee"
SESSION_EXPIRY_S = 7 * 24 * 3600

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


class Ledger:
    """Points per member and every visit, deduplicated on ``event_id``. Thread-safe."""

    def __init__(self, path: Path, points_per_visit: int = 10) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(path, shared=True)
        self._conn.executescript(LEDGER_SCHEMA)
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


@dataclass(frozen=True)
class TlsFiles:
    """The broker's CA and this backend's client certificate (``tools/make-certs``)."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""


class LoyaltyBackend:
    """Connects the ledger to the broker: check-ins in, replies out.

    A check-in whose ``device_id`` is not the kiosk of the topic it came on is
    refused: behind the broker's ACL only that kiosk can write there, so a
    kiosk cannot check visits in under another kiosk's name.
    """

    def __init__(self, host: str, port: int, ledger: Ledger, prefix: str = "loyalty",
                 client_id: str = "loyalty-backend", tls: TlsFiles | None = None) -> None:
        self.ledger = ledger
        self._prefix = prefix
        self._host, self._port = host, port
        self.received = 0
        self.duplicates = 0
        self.rejected = 0
        self.connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *_: self.connected.clear()
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(1, 5)
        if tls:  # paho checks the broker's certificate and host name
            client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file or None,
                           keyfile=tls.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
        self._client = client

    def start(self) -> None:
        """Connect in the background (retrying until the broker is there).

        The session is persistent: check-ins published while the backend is
        away are queued by the broker, not dropped.
        """
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(self._host, self._port, keepalive=30, clean_start=False,
                                   properties=properties)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(protocol.checkins_of_all_kiosks(self._prefix), qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if not any(code.is_failure for code in codes):
            self.connected.set()  # only now are check-ins sure to reach us

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            checkin, replayed = protocol.decode_checkin(message.payload)
            sender = protocol.device_of(message.topic)
            if checkin.device_id != sender:
                raise protocol.ProtocolError(
                    f"device_id {checkin.device_id!r} is not the kiosk {sender!r} that sent it")
            status, new = self.ledger.credit(checkin, replayed)
            self.received += 1
            self.duplicates += not new
            client.publish(protocol.reply_topic_for(message.topic),
                           protocol.encode_reply(checkin.event_id, checkin.member_id, status),
                           qos=1)
            log.info("visit %s of %s: %d pts%s", checkin.event_id, redact(checkin.member_id),
                     status.balance, "" if new else " (duplicate)")
        except protocol.ProtocolError as exc:
            self.rejected += 1
            log.warning("rejected a check-in on %s: %s", message.topic, exc)
        except Exception:  # never let an exception kill paho's thread
            self.rejected += 1
            log.exception("failed to handle a check-in on %s", message.topic)
