"""The real daemon started on a state database in trouble: locked by another program for longer
than SQLite's busy timeout, on a full disk, or corrupt. It starts (or waits, as promised), says
what is wrong, and delivers every check-in it still holds."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from backend import LoyaltyBackend
from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.mqtt import protocol
from kiosk.store.db import StorageError, open_db
from kiosk.store.outbox import Outbox
from kiosk.testing.daemon import start_daemon
from kiosk.testing.harness import sim_config, wait_for

DEVICE = "daemon-1"
STATE_TOPIC = f"loyalty/test-shop/{DEVICE}/state"


def store_waiting(db: Path, count: int, first: int = 0) -> list[str]:
    """``count`` check-ins waiting in the outbox at ``db``, as a kiosk stored them; their ids."""
    conn, _ = open_db(db)
    outbox = Outbox(conn, max_rows=100_000)
    ids = []
    for n in range(first, first + count):
        checkin = CheckIn(uuid7(), DEVICE, "boot-before", n + 1, time.time(), f"LOY-W{n:06d}",
                          "serial")
        outbox.add(checkin.event_id, protocol.encode_checkin(checkin))
        ids.append(checkin.event_id)
    conn.close()
    return ids


def credited(ledger) -> set[str]:
    return {event_id for event_id, _, _, _ in ledger.visits(DEVICE)}


@contextlib.contextmanager
def running(config, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    daemon = start_daemon(config, tmp_path / "kiosk.toml")
    try:
        yield daemon
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def states(messages: list[bytes]) -> list[tuple[str, str]]:
    return [(body["state"], body["reason"]) for body in map(json.loads, messages)]


def test_a_write_lock_held_longer_than_the_busy_timeout_is_waited_for(tmp_path, mosquitto,
                                                                      backend, ledger):
    config = sim_config(tmp_path / "state", mosquitto.port, device_id=DEVICE)
    waiting = store_waiting(tmp_path / "state" / "kiosk.db", 3)
    holder = sqlite3.connect(tmp_path / "state" / "kiosk.db", isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # an operator's sqlite3 session writing, or a backup
    released = threading.Event()

    def release() -> None:
        holder.execute("ROLLBACK")
        holder.close()
        released.set()

    timer = threading.Timer(12.0, release)  # over twice SQLite's own 5 s busy timeout
    timer.start()
    try:
        with running(config, tmp_path) as daemon:
            released.wait(30)
            wait_for(lambda: credited(ledger) >= set(waiting), timeout=30,
                     what="the check-ins stored before the lock delivered")
            assert daemon.poll() is None, "the kiosk gave up on a locked database"
    finally:
        timer.cancel()
        if not released.is_set():
            release()


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 2 MB tmpfs: a disk SQLite can really fill (it says ``database or disk is full``)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the file that holds the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_starts_degraded_and_still_delivers_what_is_stored(tmp_path, small_disk,
                                                                       mosquitto, backend,
                                                                       ledger):
    state = small_disk / "state"
    devices = tmp_path / "devices"  # the simulated devices' files live on another disk
    config = sim_config(devices, mosquitto.port, device_id=DEVICE)
    config = replace(config, kiosk=replace(config.kiosk, state_dir=str(state)))
    waiting = store_waiting(state / "kiosk.db", 5)
    filler = fill(small_disk)
    with mosquitto.listen(STATE_TOPIC) as reports, running(config, tmp_path) as daemon:
        wait_for(lambda: credited(ledger) >= set(waiting), timeout=30,
                 what="the check-ins stored before the disk filled delivered")
        wait_for(lambda: any(state == "degraded" and "full" in reason
                             for state, reason in states(reports)),
                 timeout=20, what="degraded: the disk is full")
        assert daemon.poll() is None
        filler.unlink()  # space again
        wait_for(lambda: states(reports)[-1][0] == "ready", timeout=30, what="ready again")
        wait_for(lambda: _depth(state / "kiosk.db") == 0, timeout=30, what="the outbox drained")
        assert daemon.poll() is None


def _depth(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1.0)) as conn:
            return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    except sqlite3.OperationalError:  # held by the daemon for a moment
        return -1


def test_a_corrupt_database_is_salvaged_delivered_and_reported_until_delivered(
        tmp_path, mosquitto, ledger):
    config = sim_config(tmp_path / "state", mosquitto.port, device_id=DEVICE)
    db = tmp_path / "state" / "kiosk.db"
    waiting = store_waiting(db, 60)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox'").fetchone()
    with open(db, "r+b") as file:  # the outbox's root page is damaged; its rows are not
        file.seek((root[0] - 1) * 4096)
        file.write(os.urandom(4096))

    def degraded_naming_the_file(reports: list[bytes]) -> bool:
        return bool(reports) and states(reports)[-1][0] == "degraded" and all(
            f"{db}.corrupt-" in reason and "60 salvaged check-ins" in reason
            for _, reason in states(reports)[-1:])

    with mosquitto.listen(STATE_TOPIC) as reports:
        with running(config, tmp_path):  # no backend yet: nothing can be delivered
            wait_for(lambda: degraded_naming_the_file(reports), timeout=20,
                     what="degraded, naming the salvaged file")
        reports.clear()
        service = LoyaltyBackend(mosquitto.host, mosquitto.port, ledger)
        with running(config, tmp_path):  # a restart does not forget it
            wait_for(lambda: degraded_naming_the_file(reports), timeout=20,
                     what="still degraded after a restart")
            service.start()
            try:
                wait_for(lambda: credited(ledger) == set(waiting), timeout=30,
                         what="every salvaged check-in delivered")
                wait_for(lambda: states(reports)[-1] == ("ready", ""), timeout=20,
                         what="ready once they are delivered")
            finally:
                service.stop()


def test_a_corrupt_database_on_a_full_disk_is_put_back_and_salvaged_once_there_is_room(
        small_disk):
    db = small_disk / "kiosk.db"
    waiting = store_waiting(db, 20)
    with open(db, "r+b") as file:
        file.write(bytes(100))  # corrupt: its header zeroed, every row still on its page
    filler = fill(small_disk)
    with pytest.raises(StorageError, match="full"):
        open_db(db)  # no room for a fresh database
    assert not list(small_disk.glob("kiosk.db.corrupt-*"))  # nothing left for nobody to read
    filler.unlink()
    conn, moved = open_db(db)
    assert moved is not None
    rows = Outbox(conn, max_rows=100).after(0, 100)
    assert [json.loads(payload)["event_id"] for _, _, payload in rows] == waiting
    conn.close()
