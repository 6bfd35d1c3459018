"""Nothing the customer was told is ever lost: broker outages, frozen brokers, kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from kiosk.counter.screens import Sync, Welcome
from kiosk.testing.cards import qr_card
from kiosk.testing.daemon import start_daemon
from kiosk.testing.harness import sim_config, wait_for


def _visits(ledger, device_id: str, count: int, what: str):
    """The device's visits in the ledger, once there are ``count`` of them."""
    return wait_for(lambda: (visits := ledger.visits(device_id)) and len(visits) == count
                    and visits, timeout=20, what=what)


def _scan(kiosk, member: str, recorded: int) -> None:
    kiosk.type_code(member)
    wait_for(lambda: kiosk.app.checkins_recorded == recorded, what=f"check-in {recorded}")


def test_checkins_survive_broker_restart_in_order_and_once(kiosk, backend, ledger, mosquitto):
    kiosk.wait_online()
    _scan(kiosk, "LOY-ALICE01", 1)
    wait_for(lambda: len(ledger.visits(kiosk.app.device_id)) == 1, what="first delivery")
    kiosk.wait_drained()  # its PUBACK is in: the outbox starts the outage empty

    mosquitto.stop()
    wait_for(lambda: not kiosk.app.controller.online, what="the kiosk to notice")
    offline_members = ["LOY-BOB0002", "LOY-CAROL03", "LOY-DAVE004", "LOY-ERIN005"]
    for count, member in enumerate(offline_members, start=2):
        _scan(kiosk, member, count)
    wait_for(lambda: isinstance(screen := kiosk.app.screen, Welcome)
             and screen.sync is Sync.PENDING, what="'will sync' on screen")
    assert kiosk.app.outbox.depth == 4

    mosquitto.start()
    kiosk.wait_drained(30)
    visits = _visits(ledger, kiosk.app.device_id, 5, "all five visits in the ledger")
    assert [seq for _, seq, _, _ in visits] == [1, 2, 3, 4, 5]
    assert [member for _, _, member, _ in visits] == ["LOY-ALICE01", *offline_members]
    assert len({event_id for event_id, _, _, _ in visits}) == 5
    assert [replayed for *_, replayed in visits] == [False, True, True, True, True]
    # The replies to the visits stored offline are the kiosk's own: accepted, cached.
    state = Path(kiosk.config.kiosk.state_dir)
    wait_for(lambda: set(offline_members) <= _cached_members(state), what="replies cached")
    assert kiosk.app.controller.replies_refused == 0


def test_checkin_survives_a_broker_killed_before_its_puback(kiosk, backend, ledger, mosquitto):
    kiosk.wait_online()
    _scan(kiosk, "LOY-ALICE01", 1)
    _visits(ledger, kiosk.app.device_id, 1, "the first visit")
    kiosk.wait_drained()
    mosquitto.pause()  # the PUBLISH goes out, no PUBACK comes back
    _scan(kiosk, "LOY-BOB0002", 2)
    _scan(kiosk, "LOY-CAROL03", 3)
    mosquitto.kill()  # ...and the broker vanishes with whatever it had half-received
    assert kiosk.app.outbox.depth == 2
    mosquitto.start()
    kiosk.wait_drained(30)
    visits = _visits(ledger, kiosk.app.device_id, 3, "all three visits")
    assert [m for _, _, m, _ in visits] == ["LOY-ALICE01", "LOY-BOB0002", "LOY-CAROL03"]
    assert ledger.balance("LOY-BOB0002") == 10


# --- the real daemon, as systemd runs it ----------------------------------------


def _outbox_depth(state: Path) -> int:
    with sqlite3.connect(state / "kiosk.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def _outbox_event_ids(state: Path) -> set[str]:
    with sqlite3.connect(state / "kiosk.db") as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM outbox")}


def _cached_members(state: Path) -> set[str]:
    with sqlite3.connect(state / "kiosk.db") as conn:
        return {row[0] for row in conn.execute("SELECT member_id FROM members")}


def _event_ids(ledger) -> set[str]:
    return {event_id for event_id, _, _, _ in ledger.visits("daemon-1")}


def _show_card_file(spool: Path, text: str) -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    partial = spool / ".card.png"
    qr_card(text).save(partial)
    return partial.rename(spool / f"{text}.png")


@pytest.fixture
def daemon_config(tmp_path, mosquitto):
    return sim_config(tmp_path / "daemon", mosquitto.port, device_id="daemon-1")


def test_kill_9_after_commit_before_puback_is_delivered_after_restart(
        daemon_config, tmp_path, mosquitto, backend, ledger):
    state = tmp_path / "daemon"
    daemon = start_daemon(daemon_config, tmp_path / "kiosk.toml")
    try:
        card = _show_card_file(state / "camera", "LOY-ALICE01")
        wait_for(lambda: len(ledger.visits("daemon-1")) == 1, timeout=20, what="first visit")
        wait_for(lambda: not card.exists(), what="the customer to take the card away")
        wait_for(lambda: _outbox_depth(state) == 0, what="the first PUBACK")

        mosquitto.pause()
        link = state / "serial"
        wait_for(link.exists, what="the serial link")
        with open(link, "w") as reader:
            reader.write("LOY-BOB0002\r")
        wait_for(lambda: _outbox_depth(state) == 1, what="the check-in committed")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        mosquitto.kill()
        assert _outbox_depth(state) == 1
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    mosquitto.start()
    daemon = start_daemon(daemon_config, tmp_path / "kiosk.toml")
    try:
        visits = _visits(ledger, "daemon-1", 2, "the check-in delivered after restart")
        assert visits[1][2] == "LOY-BOB0002"
        assert visits[1][3] is True  # it was replayed from the outbox
        wait_for(lambda: _outbox_depth(state) == 0, what="the outbox emptied")
        # sent by the kiosk before its restart, answered after it: still its own reply
        wait_for(lambda: "LOY-BOB0002" in _cached_members(state), what="Bob's reply cached")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0


def test_sigterm_stops_cleanly_and_says_offline(daemon_config, tmp_path, mosquitto, backend):
    daemon = start_daemon(daemon_config, tmp_path / "kiosk.toml")
    try:
        with mosquitto.listen("loyalty/test-shop/daemon-1/status") as statuses:
            wait_for(lambda: statuses and statuses[-1] == b"online", timeout=20, what="online")
            os.kill(daemon.pid, signal.SIGTERM)
            assert daemon.wait(15) == 0
            wait_for(lambda: statuses[-1] == b"offline", what="retained offline status")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


RUSH = 400


def test_kill_9_during_a_rush_loses_and_corrupts_nothing(daemon_config, tmp_path, mosquitto,
                                                         backend, ledger):
    state = tmp_path / "daemon"
    config = tmp_path / "kiosk.toml"
    daemon = start_daemon(daemon_config, config)
    try:
        link = state / "serial"
        wait_for(link.exists, timeout=20, what="the serial link")
        wait_for(lambda: (state / "kiosk.db").exists(), what="the database")
        with open(link, "w") as reader:  # 400 different customers, as fast as it gets
            reader.write("".join(f"LOY-RUSH{n:04d}\r" for n in range(RUSH)))
        wait_for(lambda: len(ledger.visits("daemon-1")) >= 20, timeout=20, what="the rush")
        daemon.send_signal(signal.SIGKILL)  # somewhere between scans, commits and PUBACKs
        daemon.wait(10)
        # committed before the kill: at least what the ledger has and what the outbox holds
        # (a row can be in both: acknowledged, but killed before it was deleted)
        committed = _event_ids(ledger) | _outbox_event_ids(state)
        assert len(ledger.visits("daemon-1")) < RUSH, "the kill came after the rush"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    with sqlite3.connect(state / "kiosk.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    daemon = start_daemon(daemon_config, config)
    try:
        wait_for(lambda: _outbox_depth(state) == 0, timeout=20, what="the outbox drained")
        wait_for(lambda: _event_ids(ledger) >= committed, what="every committed visit")
        # every check-in the first run committed reached the ledger exactly once:
        # its sequence numbers run from 1 without a gap or a repeat
        seqs = sorted(seq for _, seq, _, _ in ledger.visits("daemon-1"))
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) >= len(committed) >= 20
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
