"""Network and broker faults through a real TCP fault proxy: nothing committed is lost.

Silent links, lost PUBACKs, a dead network thread, a broker that forgets every
session, and SIGKILLs of the real daemon during continuous scans.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from backend.service import Ledger, LoyaltyBackend
from kiosk.testing.broker import Mosquitto
from kiosk.testing.daemon import start_daemon
from kiosk.testing.faultproxy import FaultProxy
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for

KEEPALIVE_S = 5


@pytest.fixture
def proxy(mosquitto):
    with FaultProxy(mosquitto.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def proxied_kiosk(kiosk_config, proxy):
    """A kiosk that reaches the broker only through the fault proxy."""
    config = replace(kiosk_config, mqtt=replace(kiosk_config.mqtt, port=proxy.port,
                                                keepalive_s=KEEPALIVE_S))
    kiosk = RunningKiosk(config).start()
    yield kiosk
    kiosk.stop()


def _credited(ledger, device_id: str) -> list[str]:
    return [event_id for event_id, _, _, _ in ledger.visits(device_id)]


def test_a_silent_link_is_noticed_within_a_keepalive_and_a_half_and_back_within_5_s(
        proxied_kiosk, proxy, backend, ledger):
    kiosk = proxied_kiosk
    kiosk.wait_online()
    proxy.blackhole()  # packets vanish; no reset, no FIN
    went_silent = time.monotonic()
    wait_for(lambda: not kiosk.app.controller.online, timeout=3 * KEEPALIVE_S,
             what="the kiosk to notice the silent link")
    noticed = time.monotonic() - went_silent
    assert noticed <= 1.5 * KEEPALIVE_S, f"noticed after {noticed:.1f} s"
    kiosk.type_code("LOY-ALICE01")  # a customer during the outage
    wait_for(lambda: kiosk.app.checkins_recorded == 1, what="the visit stored")
    time.sleep(2.0)  # the outage goes on while the kiosk keeps trying
    proxy.heal()
    healed = time.monotonic()
    kiosk.wait_online(timeout=15)
    back = time.monotonic() - healed
    assert back <= 5.0, f"connected again {back:.1f} s after the network healed"
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the stored visit delivered")


def test_lost_pubacks_only_cause_duplicates_with_the_same_event_id(
        proxied_kiosk, proxy, backend, ledger):
    kiosk = proxied_kiosk
    kiosk.wait_online()
    proxy.drop("down")  # PUBLISHes reach the broker, nothing comes back
    for member in ("LOY-ALICE01", "LOY-BOB0002", "LOY-CAROL03"):
        kiosk.type_code(member)
    wait_for(lambda: len(ledger.visits(kiosk.app.device_id)) == 3, what="three credited")
    assert kiosk.app.outbox.depth == 3  # no PUBACK: still waiting
    # TCP loses nothing on a connection that lives: the PUBACKs are lost with it
    wait_for(lambda: kiosk.app.link.drops >= 1, timeout=3 * KEEPALIVE_S,
             what="the kiosk to give the mute connection up")
    proxy.heal()
    kiosk.wait_drained(timeout=30)  # the kiosk gave the link up, reconnected and re-sent
    visits = ledger.visits(kiosk.app.device_id)
    assert len(visits) == 3 and len(set(_credited(ledger, kiosk.app.device_id))) == 3
    assert backend.duplicates >= 1  # the re-sends came with the same event ids
    assert ledger.balance("LOY-BOB0002") == 10


def test_a_dead_network_thread_is_started_again(kiosk, backend, ledger):
    kiosk.wait_online()
    kiosk.app.link._client.loop_stop()  # paho's thread ends, as after an internal error
    wait_for(lambda: kiosk.app.link.thread_restarts == 1, what="the thread restarted")
    assert kiosk.app.link.alive()
    kiosk.type_code("LOY-ALICE01")
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="a visit after the restart")


def test_a_reset_and_a_refused_port_lose_nothing(proxied_kiosk, proxy, backend, ledger):
    kiosk = proxied_kiosk
    kiosk.wait_online()
    proxy.refuse()  # the broker's port is closed and open connections reset
    wait_for(lambda: not kiosk.app.controller.online, what="offline")
    for member in ("LOY-ALICE01", "LOY-BOB0002"):
        kiosk.type_code(member)
    wait_for(lambda: kiosk.app.checkins_recorded == 2, what="both stored")
    proxy.heal()
    kiosk.wait_drained(timeout=20)
    proxy.reset()
    kiosk.type_code("LOY-CAROL03")
    wait_for(lambda: ledger.balance("LOY-CAROL03") == 10, what="a visit after a reset")
    assert ledger.balance("LOY-ALICE01") == ledger.balance("LOY-BOB0002") == 10


def test_a_broker_restarted_without_persistence_loses_no_check_in(tmp_path):
    broker = Mosquitto(tmp_path / "broker", persistence=False)
    broker.start()
    ledger = Ledger(tmp_path / "ledger.db")
    backend = LoyaltyBackend(broker.host, broker.port, ledger)
    kiosk = RunningKiosk(sim_config(tmp_path / "kiosk", broker.port))
    try:
        backend.start()
        kiosk.start()
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the first visit")
        kiosk.wait_drained()
        backend.stop()  # the backend is away while the broker restarts
        broker.stop()
        members = ["LOY-BOB0002", "LOY-CAROL03", "LOY-DAVE004"]
        wait_for(lambda: not kiosk.app.controller.online, what="offline")
        for member in members:
            kiosk.type_code(member)
        wait_for(lambda: kiosk.app.checkins_recorded == 4, what="visits stored offline")
        broker.start()  # every session and subscription is gone
        kiosk.wait_online(timeout=15)
        time.sleep(1.0)  # the kiosk replays into a broker where nobody listens yet
        backend = LoyaltyBackend(broker.host, broker.port, ledger)
        backend.start()
        kiosk.wait_drained(timeout=30)
        for member in members:
            wait_for(lambda m=member: ledger.balance(m) == 10, what=f"{member} credited")
    finally:
        kiosk.stop()
        backend.stop()
        ledger.close()
        broker.stop()


# --- the real daemon, killed again and again during continuous scans ----------------

KILLS = 4


def _outbox_ids(state: Path) -> set[str]:
    try:
        with sqlite3.connect(state / "kiosk.db") as conn:
            return {row[0] for row in conn.execute("SELECT event_id FROM outbox")}
    except sqlite3.OperationalError:  # the daemon has not created its tables yet
        return set()


def _committed(state: Path, ledger) -> set[str]:
    """Every check-in the daemon has committed: waiting in its outbox, or credited."""
    return _outbox_ids(state) | set(_credited(ledger, "daemon-kill"))


def _run_and_kill_mid_stream(config, path: Path, state: Path, ledger, round_: int) -> None:
    """Start the daemon, scan a stream of customers into it and SIGKILL it mid-stream."""
    started = time.time()
    daemon = start_daemon(config, path)
    try:
        link = state / "serial"
        wait_for(lambda: link.is_symlink() and link.lstat().st_mtime >= started,
                 timeout=20, what="the daemon's serial reader")
        before = len(_committed(state, ledger))
        with open(link, "w") as reader:
            for n in range(40):
                reader.write(f"LOY-K{round_:02d}N{n:04d}\r")
                reader.flush()
                if n == 5:  # the daemon is taking scans: from here on, kill it mid-stream
                    wait_for(lambda: len(_committed(state, ledger)) > before, timeout=20,
                             what="the daemon taking scans")
                if n == 25:
                    daemon.send_signal(signal.SIGKILL)
                    break
        daemon.wait(10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_repeated_sigkills_during_continuous_scans_lose_nothing(tmp_path, mosquitto, backend,
                                                                 ledger):
    state = tmp_path / "daemon"
    config = sim_config(state, mosquitto.port, device_id="daemon-kill")
    path = tmp_path / "kiosk.toml"
    committed: set[str] = set()
    for round_ in range(KILLS):
        _run_and_kill_mid_stream(config, path, state, ledger, round_)
        with sqlite3.connect(state / "kiosk.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        committed |= _committed(state, ledger)
    daemon = start_daemon(config, path)
    try:
        wait_for(lambda: (state / "kiosk.lock").read_text().strip() == str(daemon.pid),
                 timeout=20, what="the daemon up (it holds the state directory)")
        wait_for(lambda: not _outbox_ids(state), timeout=30, what="the outbox drained")
        wait_for(lambda: set(_credited(ledger, "daemon-kill")) >= committed, timeout=20,
                 what="every committed visit credited")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    credited = _credited(ledger, "daemon-kill")
    assert len(credited) == len(set(credited))  # each once
    assert len(committed) >= KILLS  # the kills came mid-stream, not before anything
