"""The real daemon as a process: one-line start-up errors, systemd's notify socket and
watchdog, connection failures in the log, a state database nobody else can read."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.testing.daemon import start_daemon, to_toml
from kiosk.testing.harness import sim_config, wait_for


def test_kiosk_run_refuses_a_bad_config_with_one_line_and_exit_2(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text("[display]\ndriver = 'ssd9999'\n")
    result = subprocess.run([sys.executable, "-m", "kiosk.cli", "run", "--config", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kiosk: config error: {path}: display.driver: expected one of ch1115, sh1106, "
        "sh1107, ssd1305, ssd1306, ssd1309, ssd1315, ssd1316, ssd1322, ssd1322_nhd, ssd1325, "
        "ssd1327, ssd1362, ssd1363, ssd1331, ssd1351, got 'ssd9999'"]


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
        # A scan while offline: the log names the member by a hash keyed with this install's
        # secret, which nobody without the state directory can recompute.
        with (tmp_path / "state" / "serial").open("wb") as reader:
            reader.write(b"LOY-ALICE01\r")
        wait_for(lambda: " check-in " in out.read_text(), timeout=15, what="the check-in logged")
        key_file = tmp_path / "state" / "log-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        keyed = hmac.new(key_file.read_bytes(), b"LOY-ALICE01", hashlib.sha256).hexdigest()
        line = next(line for line in out.read_text().splitlines() if " check-in " in line)
        assert f" of m:{keyed[:16]} from serial" in line and "ALICE" not in line
    finally:
        _stop(daemon)


def test_systemd_gets_ready_and_watchdog_pings(tmp_path, mosquitto, backend):
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000"}
    config = sim_config(tmp_path / "daemon", mosquitto.port, device_id="daemon-1")
    daemon = start_daemon(config, tmp_path / "kiosk.toml", env=env)
    try:
        messages = []
        while not any(m.startswith("WATCHDOG=1") for m in messages):
            messages.append(listener.recv(4096).decode())
        assert messages[0].startswith("READY=1\nSTATUS=device daemon-1")
        daemon.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(listener.recv(4096).decode())
        assert daemon.wait(15) == 0
    finally:
        listener.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
