"""What the running daemon tells systemd and the journal: a watchdog that stops when the
controller is stuck, connection failures with their reason, no member code in clear,
no log flood, and a state database nobody else can read."""

from __future__ import annotations

import io
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.config import KioskSection
from kiosk.counter.members import redact
from kiosk.ops import logs
from kiosk.ops.watchdog import Watchdog
from kiosk.testing.daemon import start_daemon, to_toml
from kiosk.testing.harness import sim_config, wait_for


def _notify_socket(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    return listener


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.terminate()
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def test_a_stalled_controller_stops_the_watchdog_pings(tmp_path, mosquitto):
    listener = _notify_socket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
           "WATCHDOG_USEC": "200000"}  # a ping every 0.1 s
    config = sim_config(tmp_path / "state", mosquitto.port, device_id="stall-1")
    with mosquitto.listen("loyalty/test-shop/stall-1/evt/checkin") as checkins:
        daemon = start_daemon(config, tmp_path / "kiosk.toml", env=env)
        try:
            listener.settimeout(20)
            assert listener.recv(4096).startswith(b"READY=1")
            assert listener.recv(4096) == b"WATCHDOG=1"
            # Another process holds the database's write lock: the controller's INSERT for
            # the next customer waits in SQLite's busy handler (up to 5 s).
            locker = sqlite3.connect(tmp_path / "state" / "kiosk.db", isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            with open(config.serial.sim_link, "wb") as scanner:
                scanner.write(b"LOY-ALICE01\r")
            typed = time.monotonic()
            listener.settimeout(1.0)  # ten missed pings
            with pytest.raises(TimeoutError):
                while time.monotonic() - typed < 4:  # pings go on until the code arrives
                    assert listener.recv(4096) == b"WATCHDOG=1"
            locker.execute("ROLLBACK")
            locker.close()
            listener.settimeout(5)
            assert listener.recv(4096) == b"WATCHDOG=1"  # the controller is back
            wait_for(lambda: checkins, what="the stalled check-in, delivered after all")
        finally:
            _stop(daemon)
            listener.close()
    assert daemon.returncode == 0


def test_the_watchdog_is_withheld_while_a_vital_thread_is_dead(tmp_path, caplog, monkeypatch):
    listener = _notify_socket(tmp_path / "notify.sock")
    listener.settimeout(0.5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    paho_alive = True
    watchdog = Watchdog(1.0, {"MQTT network thread": lambda: paho_alive})
    try:
        watchdog.feed(10.0)
        assert listener.recv(64) == b"WATCHDOG=1"
        paho_alive = False
        with caplog.at_level(logging.ERROR, "kiosk.ops.watchdog"):
            watchdog.feed(11.0)
            watchdog.feed(12.0)
        with pytest.raises(TimeoutError):
            listener.recv(64)
        assert [r.getMessage() for r in caplog.records] == [
            "not feeding the systemd watchdog: MQTT network thread stopped; systemd restarts "
            "the kiosk when WatchdogSec runs out"]  # said once, not on every turn
        paho_alive = True
        watchdog.feed(13.0)
        assert listener.recv(64) == b"WATCHDOG=1"
    finally:
        listener.close()


def test_an_unreachable_broker_is_logged_with_the_reason_and_the_db_is_private(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = sim_config(tmp_path / "state", port, device_id="lonely-1")
    (tmp_path / "kiosk.toml").write_text(to_toml(config).replace('"INFO"', '"info"'))
    out = tmp_path / "stdout.log"
    with out.open("wb") as stdout:
        daemon = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "run", "--config",
                                   str(tmp_path / "kiosk.toml")], stdout=stdout,
                                  stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "cannot reach the broker" in out.read_text(), timeout=15,
                 what="a log line about the broker")
        line = next(line for line in out.read_text().splitlines() if "cannot reach" in line)
        assert f"127.0.0.1:{port}: [Errno 111] Connection refused" in line
        assert " WARNING kiosk.mqtt.link: " in line
        for name in ("kiosk.db", "kiosk.db-wal"):
            mode = stat.S_IMODE((tmp_path / "state" / name).stat().st_mode)
            assert mode & 0o007 == 0, f"{name} is {oct(mode)}"
    finally:
        _stop(daemon)


def test_log_levels_are_read_in_any_case():
    assert KioskSection(log_level="debug").log_level == "DEBUG"


@pytest.fixture
def log_output():
    buffer = io.StringIO()
    handler = logs.setup("INFO", r"LOY-[A-Z0-9]{4,32}", stream=buffer)
    try:
        yield buffer
    finally:
        logging.getLogger().removeHandler(handler)


def test_member_codes_never_reach_the_log_in_clear(log_output):
    log = logging.getLogger("kiosk.test")
    log.warning("reply for %s did not match", "LOY-ALICE01")
    try:
        raise ValueError("bad payload {'member_id': 'LOY-BOB0002'}")
    except ValueError:
        log.exception("failed to handle a reply")
    text = log_output.getvalue()
    assert "LOY-ALICE01" not in text and "LOY-BOB0002" not in text
    assert redact("LOY-ALICE01") in text and redact("LOY-BOB0002") in text


def test_a_repeated_error_is_logged_a_few_times_then_counted(log_output):
    log = logging.getLogger("kiosk.test")
    for _ in range(50):
        log.warning("cannot open %s (%s); retrying in 1.0 s", "/dev/ttyACM0", "no such file")
    log.info("unrelated news")
    lines = log_output.getvalue().splitlines()
    assert len(lines) == logs.BURST + 1
    assert "more are held back" in lines[logs.BURST - 1]
    later = logging.LogRecord("kiosk.test", logging.WARNING, __file__, 1,
                              "cannot open %s (%s); retrying in 1.0 s",
                              ("/dev/ttyACM0", "no such file"), None)
    later.created = time.time() + logs.WINDOW_S
    logging.getLogger("kiosk.test").handle(later)
    assert "[45 more like this held back]" in log_output.getvalue().splitlines()[-1]


def test_under_journald_lines_carry_syslog_priorities(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    buffer = io.StringIO()
    handler = logs.setup("INFO", r"LOY-[A-Z0-9]{4,32}", stream=buffer)
    try:
        logging.getLogger("kiosk.test").error("disk full")
    finally:
        logging.getLogger().removeHandler(handler)
    assert buffer.getvalue() == "<3>kiosk.test: disk full\n"
