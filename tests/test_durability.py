"""Never lose a check-in, part 2: each hole found under hostile testing, as a test.

Locked, unopenable and corrupt databases; a flood that must not drop an
acknowledgement or a scan; a delete that fails after its PUBACK; storage
trouble that monitoring must see; a cooldown that survives a restart; two
daemons on one state directory; a read-only state directory.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.config import OutboxSection, TelemetrySection
from kiosk.counter.screens import Fault, NotRecorded, OutOfService, Sync, Welcome
from kiosk.store import db as kiosk_db
from kiosk.store.db import StorageError, open_db
from kiosk.store.outbox import Outbox
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import RunningKiosk, wait_for


def _outbox_with(path: Path, count: int) -> None:
    conn, _ = open_db(path)
    outbox = Outbox(conn, max_rows=1000)
    for n in range(count):
        outbox.add(f"event-{n}", json.dumps({"v": 1, "n": n}).encode())
    conn.close()


# --- 1. only real corruption moves a database aside ------------------------------


def _lock(path: Path) -> sqlite3.Connection:
    """Hold ``path`` the way a sqlite3 shell in exclusive locking mode does: nobody else gets in."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_locked_database_is_never_moved_aside(tmp_path, monkeypatch):
    path = tmp_path / "kiosk.db"
    _outbox_with(path, 3)
    monkeypatch.setattr(kiosk_db, "LOCK_WAIT_S", 1.0, raising=False)
    holder = _lock(path)  # an operator's sqlite3 session, or a backup
    try:
        with pytest.raises(StorageError, match="locked"):
            open_db(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("kiosk.db.corrupt-*"))
    conn, moved = open_db(path)
    assert moved is None and Outbox(conn, max_rows=10).depth == 3


def test_a_lock_released_while_starting_is_waited_for(tmp_path, monkeypatch):
    path = tmp_path / "kiosk.db"
    _outbox_with(path, 2)
    monkeypatch.setattr(kiosk_db, "LOCK_WAIT_S", 20.0, raising=False)
    holder = _lock(path)
    release = threading.Timer(6.0, lambda: (holder.execute("ROLLBACK"), holder.close()))
    release.start()  # longer than SQLite's own 5 s busy timeout
    try:
        conn, moved = open_db(path)
    finally:
        release.join()
    assert moved is None and Outbox(conn, max_rows=10).depth == 2


def test_a_database_that_cannot_be_opened_is_reported_not_discarded(tmp_path):
    path = tmp_path / "kiosk.db"
    path.mkdir()  # cannot be opened as a file, like a root-owned kiosk.db under the service user
    (path / "keep").write_text("operator's data")
    with pytest.raises(StorageError, match="cannot open"):
        open_db(path)
    assert (path / "keep").read_text() == "operator's data"
    assert not list(tmp_path.glob("kiosk.db.corrupt-*"))


def test_a_corrupt_database_is_moved_aside_and_its_waiting_checkins_salvaged(tmp_path):
    path = tmp_path / "kiosk.db"
    _outbox_with(path, 20)
    conn, _ = open_db(path)
    conn.executemany("INSERT INTO members VALUES (?, ?, 0)",
                     [(f"LOY-M{n:05d}", "x" * 200) for n in range(3000)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as file:  # scribble over the member pages, far from the outbox
        file.seek(size * 2 // 3)
        file.write(os.urandom(16384))
    conn, moved = open_db(path)
    assert moved is not None and Path(moved).exists()
    rows = Outbox(conn, max_rows=100).after(0, 100)
    assert [json.loads(payload)["n"] for _, payload in rows] == list(range(20))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- 2. a flood never drops an acknowledgement, nor a scan silently -----------------


def test_a_reply_flood_during_a_scan_rush_loses_no_acknowledgement_and_no_scan(
        kiosk, backend, ledger, mosquitto):
    kiosk.wait_online()
    flooder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flooder")
    flooder.connect(mosquitto.host, mosquitto.port)
    flooder.loop_start()
    members = [f"LOY-FLOOD{n:03d}" for n in range(30)]
    try:
        forged = json.dumps({"v": 1, "event_id": "nope", "member_id": "LOY-X0001",
                             "display_name": "X", "balance": 1, "tier": "Gold",
                             "points_to_next": 1, "progress": 0.5}).encode()
        for n in range(15_000):
            flooder.publish(kiosk.app.topics.reply, forged, qos=0)
            if n % 500 == 0:
                kiosk.type_code(members[n // 500])
        wait_for(lambda: kiosk.app.scans_seen + kiosk.app.scans_not_taken >= 30, timeout=30,
                 what="every scan accounted for")
    finally:
        flooder.loop_stop()
        flooder.disconnect()
    app = kiosk.app
    # every scan was either recorded or shown and counted as not taken: none vanished
    assert app.checkins_recorded + app.scans_not_taken == 30
    # every recorded visit was acknowledged and deleted: no PUBACK was lost
    wait_for(lambda: app.outbox.depth == 0, timeout=30, what="every PUBACK handled")
    wait_for(lambda: len(ledger.visits(app.device_id)) == app.checkins_recorded,
             timeout=30, what="every recorded visit credited")


def test_acknowledgements_and_scans_are_kept_when_the_message_lane_is_full(kiosk_config):
    from kiosk.counter.events import Acked, CodeRead, Reply
    from kiosk.counter.members import MemberStatus
    from kiosk.daemon.app import App

    app = App(kiosk_config)
    try:
        status = MemberStatus("X", 1, "Gold", 1, 0.5)
        for _ in range(5000):  # nobody reads: the controller is busy (or stuck)
            app._emit(Reply("nope", "LOY-X0001", status))
        app._emit(Acked(7))
        app._emit(CodeRead("LOY-ALICE01", "serial", time.time()))
        taken = []
        while (event := app.inbox.get(0)) is not None:
            taken.append(event)
        assert Acked(7) in taken
        assert any(isinstance(event, CodeRead) for event in taken)
        assert app.inbox.dropped_messages > 0
    finally:
        app.hardware.close()
        app._db.close()
        app.lock.release()


# --- 3. a failed delete after a PUBACK is retried ---------------------------------


def test_a_delete_that_fails_after_its_puback_is_retried(kiosk, backend, ledger, mosquitto):
    kiosk.wait_online()
    mosquitto.pause()  # the PUBLISH goes out, the PUBACK waits
    kiosk.type_code("LOY-ALICE01")
    wait_for(lambda: kiosk.app.checkins_recorded == 1, what="the check-in committed")
    kiosk.app._db.execute("PRAGMA query_only = 1")  # every write now fails, as on a full card
    mosquitto.resume()
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the delivery")
    wait_for(lambda: "storage" in kiosk.app.problems.reason, timeout=20,
             what="storage trouble reported")
    assert kiosk.app.outbox.depth == 1
    kiosk.app._db.execute("PRAGMA query_only = 0")  # space again
    wait_for(lambda: kiosk.app.outbox.depth == 0, timeout=20, what="the delete retried")
    wait_for(lambda: not kiosk.app.problems.active, timeout=20, what="the trouble cleared")


# --- 4. storage trouble is visible to monitoring, and clears --------------------


def test_a_full_outbox_is_a_degraded_state_and_a_health_counter_until_it_drains(
        kiosk_config, mosquitto, backend, ledger):
    config = replace(kiosk_config, outbox=OutboxSection(max_rows=1),
                     telemetry=TelemetrySection(interval_s=1.0))
    topics = "loyalty/test-shop/kiosk-test/"
    with mosquitto.listen(topics + "state") as states, \
            mosquitto.listen(topics + "tele/health") as reports:
        kiosk = RunningKiosk(config).start()
        try:
            kiosk.wait_online()
            mosquitto.pause()  # no PUBACK: the one slot stays taken
            kiosk.type_code("LOY-ALICE01")
            wait_for(lambda: kiosk.app.checkins_recorded == 1, what="Alice stored")
            kiosk.type_code("LOY-BOB0002")
            wait_for(lambda: isinstance(kiosk.app.screen, NotRecorded), what="Bob refused")
            # once the refusal has been read, the idle screen says why: staff must step in
            wait_for(lambda: kiosk.app.screen == OutOfService(
                Fault.OUTBOX_FULL, "outbox full (1 check-ins waiting)"), what="out of service")
            mosquitto.resume()
            wait_for(lambda: any(json.loads(s)["state"] == "degraded"
                                 and "outbox full" in json.loads(s)["reason"] for s in states),
                     what="retained state degraded: outbox full")
            wait_for(lambda: any(json.loads(r)["visits_refused"] == 1 for r in reports),
                     what="the refused visit counted in health")
            wait_for(lambda: kiosk.app.outbox.depth == 0, what="Alice delivered")
            wait_for(lambda: json.loads(states[-1])["state"] == "ready",
                     what="ready again once there is room")
            wait_for(lambda: not isinstance(kiosk.app.screen, OutOfService),
                     what="in service again")
        finally:
            kiosk.stop()


def test_a_full_disk_is_degraded_and_clears_when_space_returns(kiosk, backend, ledger,
                                                              mosquitto):
    kiosk.wait_online()
    mosquitto.pause()  # nothing is acknowledged: the outbox grows
    conn = kiosk.app._db
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the SD card is full
    for n in range(300):  # a rush of customers until the disk refuses one
        kiosk.type_code(f"LOY-DISK{n:04d}")
        if kiosk.app.visits_refused:
            break
        wait_for(lambda n=n: kiosk.app.scans_seen == n + 1, what=f"scan {n}")
    wait_for(lambda: kiosk.app.visits_refused >= 1, what="a visit refused")
    wait_for(lambda: "storage" in kiosk.app.problems.reason, what="degraded: storage")
    conn.execute("PRAGMA max_page_count = 1000000")  # space again
    mosquitto.resume()
    wait_for(lambda: not kiosk.app.problems.active, timeout=20, what="the trouble cleared")
    kiosk.type_code("LOY-AFTER01")
    wait_for(lambda: ledger.balance("LOY-AFTER01") == 10, what="a visit after recovery")


# --- 5. a card held across a restart checks in once ------------------------------


def test_a_card_scanned_again_after_a_restart_within_the_cooldown_checks_in_once(
        kiosk_config, mosquitto, backend, ledger):
    config = replace(kiosk_config, counter=replace(kiosk_config.counter, cooldown_s=30.0))
    first = RunningKiosk(config).start()
    try:
        first.wait_online()
        first.type_code("LOY-ALICE01")
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the first visit")
    finally:
        first.stop()
    second = RunningKiosk(config).start()
    try:
        second.wait_online()
        second.type_code("LOY-ALICE01")  # still held up while the daemon restarted
        wait_for(lambda: isinstance(screen := second.app.screen, Welcome)
                 and screen.sync is Sync.ALREADY, what="'already checked in'")
        second.type_code("LOY-BOB0002")  # the next customer is not held up
        wait_for(lambda: ledger.balance("LOY-BOB0002") == 10, what="Bob's visit")
        assert second.app.checkins_recorded == 1
        assert ledger.balance("LOY-ALICE01") == 10
    finally:
        second.stop()


# --- 7, 8. one daemon per state directory; clear start-up errors -------------------


def _run_daemon(config_path: Path, user: str | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "kiosk.cli", "run", "--config", str(config_path)]
    if user:
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_daemon_on_the_same_state_directory_refuses_with_one_line(
        kiosk_config, tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(kiosk_config))
    first = _run_daemon(path)
    try:
        wait_for(lambda: (Path(kiosk_config.kiosk.state_dir) / "kiosk.db").exists(),
                 timeout=20, what="the first daemon")
        second = _run_daemon(path)
        _, err = second.communicate(timeout=20)
        assert second.returncode == 1
        assert err.count("\n") == 1 and "already running" in err, err
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(15)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the daemon as nobody")
def test_a_read_only_state_directory_is_one_clear_line(kiosk_config):
    home = Path(tempfile.mkdtemp(prefix="kiosk-ro-"))  # pytest's tmp_path is root-only
    try:
        home.chmod(0o755)
        state = home / "state"
        state.mkdir(mode=0o555)
        config = replace(kiosk_config, kiosk=replace(kiosk_config.kiosk, state_dir=str(state)))
        path = home / "kiosk.toml"
        path.write_text(to_toml(config))
        path.chmod(0o644)
        daemon = _run_daemon(path, user="nobody")
        _, err = daemon.communicate(timeout=30)
    finally:
        shutil.rmtree(home)
    assert daemon.returncode == 1
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert str(state) in err


# --- the backlog does not starve the customer at the counter ------------------------


def test_a_live_check_in_goes_ahead_of_a_long_backlog(kiosk_config, mosquitto, backend, ledger):
    from kiosk.counter.checkin import CheckIn, uuid7
    from kiosk.mqtt import protocol

    state = Path(kiosk_config.kiosk.state_dir)
    conn, _ = open_db(state / "kiosk.db")
    backlog = [CheckIn(uuid7(), "kiosk-test", "boot0", n + 1, time.time(), f"LOY-OLD{n:05d}",
                       "camera") for n in range(2_000)]
    Outbox(conn, max_rows=100_000).add_many(
        [(c.event_id, protocol.encode_checkin(c)) for c in backlog], [])
    conn.close()
    kiosk = RunningKiosk(kiosk_config).start()
    try:
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, timeout=30, what="Alice credited")
        assert kiosk.app.outbox.depth > 500, "the live visit waited for the backlog"
        visit = next(v for v in ledger.visits(kiosk.app.device_id) if v[2] == "LOY-ALICE01")
        assert visit[3] is False  # sent live, not replayed
    finally:
        kiosk.stop()
