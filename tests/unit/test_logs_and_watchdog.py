"""What the daemon tells systemd and the journal, part by part: a watchdog withheld while a
vital thread is dead, no member code in clear, no log flood, syslog priorities."""

from __future__ import annotations

import errno
import io
import logging
import socket
import time
from pathlib import Path

import pytest

from kiosk.counter.members import redact
from kiosk.ops import logs
from kiosk.ops.watchdog import Watchdog
from kiosk.store import statedir
from kiosk.store.statedir import log_key


def _notify_socket(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    return listener


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


def test_an_empty_member_pattern_means_none_and_logs_cleanly():
    buffer = io.StringIO()
    handler = logs.setup("INFO", "", stream=buffer)
    try:
        logging.getLogger("kiosk.test").info("tag %s and card %s read", "uid:04A1B2C3",
                                             "LOY1.k1.M-1.c2lnbmF0dXJl")
    finally:
        logging.getLogger().removeHandler(handler)
    line = buffer.getvalue().splitlines()[0]
    assert line.endswith(f"kiosk.test: tag {redact('uid:04A1B2C3')} and card "
                         f"{redact('LOY1.k1.M-1.c2lnbmF0dXJl')} read")


def test_the_log_key_is_made_once_private_and_kept(tmp_path):
    state = tmp_path / "state"
    key = log_key(state)
    assert len(key) == 32 and log_key(state) == key
    assert (state / "log-key").stat().st_mode & 0o777 == 0o600
    (state / "log-key").write_bytes(b"cut short")  # a power cut while it was first written
    assert log_key(state) not in (key, b"cut short") and len(log_key(state)) == 32


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


def test_logging_set_up_twice_in_one_process_prints_each_line_once():
    """``kiosk.cli.main`` run twice in one process (tests, integrators) replaces its handler:
    two would print every line twice, and the first one's filters rewrite the records the
    second one rate-limits."""
    first, second = io.StringIO(), io.StringIO()
    logs.setup("INFO", r"LOY-[A-Z0-9]{4,32}", stream=first)
    handler = logs.setup("INFO", r"LOY-[A-Z0-9]{4,32}", stream=second)
    try:
        log = logging.getLogger("kiosk.test")
        for _ in range(50):
            log.warning("cannot open %s; retrying", "/dev/ttyACM0")
        assert first.getvalue() == ""
        assert len(second.getvalue().splitlines()) == logs.BURST
    finally:
        logging.getLogger().removeHandler(handler)


def test_lines_held_back_are_told_of_when_their_window_ends_even_if_none_follows(log_output):
    log = logging.getLogger("kiosk.test")
    for n in range(13):  # refusals: the first five are logged in full
        log.error("check-in %s NOT recorded: %s", f"e{n}", "outbox full")
    assert logs.held_back() == 8
    logs.report_held_back()  # the window has not ended: nothing to say yet
    assert len(log_output.getvalue().splitlines()) == logs.BURST
    logs.report_held_back(time.time() + logs.WINDOW_S)
    last = log_output.getvalue().splitlines()[-1]
    assert "8 more lines like this were held back" in last and "NOT recorded" in last
    logs.report_held_back(time.time() + 2 * logs.WINDOW_S)  # told once
    assert len(log_output.getvalue().splitlines()) == logs.BURST + 1


def test_a_log_key_that_cannot_be_saved_is_used_for_this_run_and_reported(tmp_path,
                                                                          monkeypatch):
    """As on a full disk (tests/system/test_storage_at_start.py fills a real one)."""
    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(statedir, "write_private_key", full)
    said: list[str] = []
    key = log_key(tmp_path, on_unsaved=said.append)
    assert len(key) == 32 and not (tmp_path / "log-key").exists()
    assert said == [f"cannot write {tmp_path / 'log-key'}: No space left on device"]
