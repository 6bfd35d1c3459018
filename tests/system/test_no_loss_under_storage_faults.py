"""Storage trouble on a running kiosk: a full outbox or disk, a delete that fails after its
PUBACK, a corrupt, shared or read-only state directory. The kiosk says so, refuses
loudly what it cannot keep, keeps what it holds, and recovers."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.config import OutboxSection, TelemetrySection
from kiosk.counter.screens import Fault, NotRecorded, OutOfService
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import RunningKiosk, wait_for


def test_a_full_outbox_refuses_the_visit_loudly_and_keeps_what_it_holds(kiosk_config, mosquitto,
                                                                       backend, ledger):
    config = replace(kiosk_config, outbox=OutboxSection(max_rows=1))
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        mosquitto.stop()
        wait_for(lambda: not kiosk.app.controller.online, what="offline")
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: kiosk.app.checkins_recorded == 1, what="Alice recorded")
        kiosk.type_code("LOY-BOB0002")
        wait_for(lambda: isinstance(kiosk.app.screen, NotRecorded), what="the refusal")
        assert kiosk.app.screen == NotRecorded("outbox full")
        wait_for(lambda: kiosk.app.hardware.lights.current == "full", what="the steady red")
        assert kiosk.app.outbox.depth == 1
        mosquitto.start()
        kiosk.wait_drained(30)
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="Alice delivered")
        assert ledger.balance("LOY-BOB0002") == 0
    finally:
        kiosk.stop()


def test_a_delete_that_fails_after_its_puback_is_retried(kiosk, backend, ledger, mosquitto):
    kiosk.wait_online()
    mosquitto.pause()  # the PUBLISH goes out, the PUBACK waits
    kiosk.type_code("LOY-ALICE01")
    wait_for(lambda: kiosk.app.checkins_recorded == 1, what="the check-in committed")
    kiosk.app.db.execute("PRAGMA query_only = 1")  # every write now fails, as on a full card
    mosquitto.resume()
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the delivery")
    wait_for(lambda: "storage" in kiosk.app.problems.reason, timeout=20,
             what="storage trouble reported")
    assert kiosk.app.outbox.depth == 1
    kiosk.app.db.execute("PRAGMA query_only = 0")  # space again
    wait_for(lambda: kiosk.app.outbox.depth == 0, timeout=20, what="the delete retried")
    wait_for(lambda: not kiosk.app.problems.active, timeout=20, what="the trouble cleared")


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
    conn = kiosk.app.db
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the SD card is full
    for n in range(300):  # a rush of customers until the disk refuses one
        kiosk.type_code(f"LOY-DISK{n:04d}")
        if kiosk.app.delivery.visits_refused:
            break
        wait_for(lambda n=n: kiosk.app.controller.scans_seen == n + 1, what=f"scan {n}")
    wait_for(lambda: kiosk.app.delivery.visits_refused >= 1, what="a visit refused")
    wait_for(lambda: "storage" in kiosk.app.problems.reason, what="degraded: storage")
    conn.execute("PRAGMA max_page_count = 1000000")  # space again
    mosquitto.resume()
    wait_for(lambda: not kiosk.app.problems.active, timeout=20, what="the trouble cleared")
    kiosk.type_code("LOY-AFTER01")
    wait_for(lambda: ledger.balance("LOY-AFTER01") == 10, what="a visit after recovery")


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


def test_a_corrupt_database_is_replaced_and_reported(kiosk_config, mosquitto, backend, ledger):
    state = kiosk_config.kiosk.state_dir
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "kiosk.db"), "wb") as db:
        db.write(b"\x00garbage" * 512)
    kiosk = RunningKiosk(kiosk_config).start()
    try:
        assert "database was corrupt" in kiosk.app.problems.reason
        kiosk.wait_online()
        kiosk.show_card("LOY-ALICE01")
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="a check-in on the new db")
    finally:
        kiosk.stop()


def test_the_log_says_check_in_only_for_a_committed_visit(kiosk, mosquitto, caplog):
    kiosk.wait_online()
    with caplog.at_level(logging.INFO):
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: kiosk.app.checkins_recorded == 1, what="Alice recorded")
        kiosk.app.db.execute("PRAGMA query_only = 1")  # every write now fails, as on a full card
        kiosk.type_code("LOY-BOB0002")
        wait_for(lambda: isinstance(kiosk.app.screen, NotRecorded), what="Bob refused")
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("check-in ")]
    assert len(logged) == 2 and "NOT recorded" in logged[1], logged
    [stored] = [payload for _, _, payload in kiosk.app.outbox.after(0, 10)]
    assert json.loads(stored)["event_id"] in logged[0] and "NOT recorded" not in logged[0]
    kiosk.app.db.execute("PRAGMA query_only = 0")
