"""Delivery ends at the ledger: a check-in leaves the kiosk only when the backend has it.

Real mosquitto, the real kiosk (on its controller thread) and the real reference backend,
on MQTT 5 and 3.1.1: every check-in typed is credited exactly once although the broker
drops what overflows a backend's queue, forgets everything in a ``kill -9`` without
persistence, or an acknowledgement never arrives.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from backend import Ledger, LoyaltyBackend
from backend.service import _Arrived
from kiosk.config import OutboxSection, TelemetrySection
from kiosk.counter.checkin import CheckIn
from kiosk.mqtt import protocol
from kiosk.ops import doctor, status
from kiosk.staff import kioskctl
from kiosk.store.db import open_db
from kiosk.store.outbox import Outbox
from kiosk.testing.broker import Mosquitto
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for

PROTOCOLS = ["5", "3.1.1"]
QUICK = OutboxSection(ack_timeout_s=2.0, backend_alarm_s=4.0)
"""Acknowledgements waited for 2 s before sending again (30 s in the shipped config)."""


def _members(count: int, first: int = 0) -> list[str]:
    return [f"LOY-M{n:06d}" for n in range(first, first + count)]


def _kiosk(state: Path, broker: Mosquitto, version: str) -> RunningKiosk:
    config = sim_config(state, broker.port, device_id="kiosk-e2e", outbox=QUICK)
    return RunningKiosk(replace(config, mqtt=replace(config.mqtt, protocol=version)))


def _type_all(kiosk: RunningKiosk, members: list[str]) -> None:
    """A rush at the serial reader, twenty at a time (the scan lane holds 64), each twenty
    committed before the next."""
    start = kiosk.app.checkins_recorded
    for first in range(0, len(members), 20):
        for member in members[first:first + 20]:
            kiosk.type_code(member)
        done = start + min(first + 20, len(members))
        wait_for(lambda d=done: kiosk.app.checkins_recorded >= d, what=f"{done} committed")


def _credited_once(ledger: Ledger, members: list[str]) -> None:
    """Every member's visit is in the ledger once: 10 points, one visit row."""
    visits = ledger.visits("kiosk-e2e")
    assert sorted(member for _, _, member, _ in visits) == sorted(members)
    assert all(ledger.balance(member) == 10 for member in members)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    book = Ledger(tmp_path / "ledger.db")
    yield book
    book.close()


def _backend(broker: Mosquitto, ledger: Ledger, kind: type[LoyaltyBackend] = LoyaltyBackend
             ) -> LoyaltyBackend:
    service = kind(broker.host, broker.port, ledger)
    service.start()
    assert service.connected.wait(10), "backend did not subscribe"
    return service


@pytest.mark.parametrize("version", PROTOCOLS)
def test_a_backend_away_while_its_broker_queue_overflows_gets_every_check_in(
        tmp_path, ledger, version):
    """The broker queues 2 messages for the absent backend and drops the rest (with a PUBACK
    to the kiosk all the same): each message holds at most the 20 typed together, so at least
    20 of 60 are dropped (on MQTT 3.1.1, one a message, 58). Before acknowledgements, 40 of 60
    were lost with a queue of 20."""
    broker = Mosquitto(tmp_path / "broker", max_queued=2)
    broker.start()
    _backend(broker, ledger).stop()  # its persistent session stays, subscribed, queueing
    kiosk = _kiosk(tmp_path / "kiosk", broker, version).start()
    try:
        kiosk.wait_online()
        members = _members(60)
        _type_all(kiosk, members)
        publisher = kiosk.app.delivery.publisher
        wait_for(lambda: publisher.published >= 60, what="the broker took all 60")
        time.sleep(0.5)
        assert kiosk.app.outbox.depth == 60  # the broker's PUBACK deleted nothing
        backend = _backend(broker, ledger)
        try:
            assert kiosk.wait_credited(60, timeout=40) >= 60
            _credited_once(ledger, members)
            assert publisher.resent >= 20  # what the broker dropped went again
        finally:
            backend.stop()
    finally:
        kiosk.stop()
        broker.stop()


@pytest.mark.parametrize("version", PROTOCOLS)
def test_a_broker_killed_mid_rush_without_persistence_loses_no_check_in(
        tmp_path, ledger, version):
    broker = Mosquitto(tmp_path / "broker", persistence=False)
    broker.start()
    backend = _backend(broker, ledger)
    kiosk = _kiosk(tmp_path / "kiosk", broker, version).start()
    members = _members(150)
    try:
        kiosk.wait_online()
        _type_all(kiosk, members[:100])
        broker.kill()  # SIGKILL: its queues, sessions and subscriptions are gone
        _type_all(kiosk, members[100:])
        backend.stop()
        broker.start()
        backend = _backend(broker, ledger)  # subscribes again on the empty broker
        kiosk.wait_credited(150, timeout=60)
        _credited_once(ledger, members)
    finally:
        kiosk.stop()
        backend.stop()
        broker.stop()


class _LosesFirstAnswers(LoyaltyBackend):
    """A backend that commits, then dies before answering (its first answer to each check-in
    never leaves): the ledger has the visit, the kiosk never hears of it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.unanswered: set[str] = set()

    def _credit(self, batch: list[_Arrived]) -> None:
        fresh = [a for a in batch if a.checkin and a.checkin.event_id not in self.unanswered]
        self.ledger.record([(a.checkin, a.replayed) for a in fresh if a.checkin], [])
        self.unanswered.update(a.checkin.event_id for a in fresh if a.checkin)
        super()._credit([a for a in batch if a not in fresh])


@pytest.mark.parametrize("version", PROTOCOLS)
def test_a_lost_acknowledgement_is_sent_again_and_credited_once(tmp_path, mosquitto, ledger,
                                                                version):
    backend = _backend(mosquitto, ledger, _LosesFirstAnswers)
    kiosk = _kiosk(tmp_path / "kiosk", mosquitto, version).start()
    try:
        kiosk.wait_online()
        members = _members(5)
        for member in members:
            kiosk.type_code(member)
        kiosk.wait_credited(5, timeout=30)
        _credited_once(ledger, members)
        assert kiosk.app.delivery.publisher.resent >= 5
        assert backend.duplicates >= 5  # the second sending was recognised, not credited
    finally:
        kiosk.stop()
        backend.stop()


def test_a_refused_check_in_leaves_with_its_reason_and_holds_nothing_up(
        tmp_path, mosquitto, ledger, caplog):
    """A row the backend can never credit (here: stored by a kiosk whose clock said the year
    6000) is refused by name; the kiosk deletes it, logs and counts why, and the check-ins
    behind it are credited as usual."""
    state = tmp_path / "kiosk"
    state.mkdir()
    bad = CheckIn("01890000-0000-7000-8000-000000000001", "kiosk-e2e", "boot", 1, 1.2e11,
                  "LOY-FUTURE01", "serial")
    db, _ = open_db(state / "kiosk.db")
    Outbox(db, max_rows=10).add(bad.event_id, protocol.encode_checkin(bad))
    db.close()
    backend = _backend(mosquitto, ledger)
    kiosk = _kiosk(state, mosquitto, "5").start()
    try:
        kiosk.wait_online()
        members = _members(3)
        publisher = kiosk.app.delivery.publisher
        with caplog.at_level(logging.ERROR):
            _type_all(kiosk, members)
            wait_for(lambda: publisher.backend_refused == 1, what="the refusal")
            wait_for(lambda: publisher.delivered == 3 and kiosk.app.outbox.depth == 0,
                     what="the three behind it credited and the outbox emptied")
        _credited_once(ledger, members)
        assert f"the backend refused check-in {bad.event_id} for good: field 'captured_at'" \
            in caplog.text
        assert kiosk.app.health().backend_refused == 1
        assert [r.event_id for r in ledger.refusals()] == [bad.event_id]
    finally:
        kiosk.stop()
        backend.stop()


class _Unacknowledging(LoyaltyBackend):
    """A backend written before acknowledgements: it answers, without ``ack``."""

    def _credit(self, batch: list[_Arrived]) -> None:
        visits = [(a.checkin, a.replayed) for a in batch if a.checkin]
        for (checkin, _), (standing, _new) in zip(visits, self.ledger.record(visits, []),
                                                strict=True):
            body = protocol.encode_reply(checkin.event_id, checkin.member_id, standing,
                                         protocol.Ack.CREDITED).replace(b',"ack":"credited"', b"")
            self._client.publish(batch[0].reply_topic, body, qos=1)


def test_a_backend_that_never_acknowledges_is_shown_not_a_silent_leak(tmp_path, mosquitto,
                                                                        ledger):
    backend = _backend(mosquitto, ledger, _Unacknowledging)
    kiosk = _kiosk(tmp_path / "kiosk", mosquitto, "5").start()
    try:
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="credited")
        wait_for(lambda: "backend" in kiosk.app.problems, what="the backend reported")
        assert "answers without acknowledging" in kiosk.app.problems.text("backend")
        assert kiosk.app.problems.state == "degraded"
        assert kiosk.app.outbox.depth == 1  # kept: nothing says the ledger has it
    finally:
        kiosk.stop()
        backend.stop()


def test_a_silent_backend_makes_the_kiosk_degraded_and_health_says_what_waits(
        tmp_path, mosquitto, ledger):
    _backend(mosquitto, ledger).stop()  # gone away; the broker queues for it
    config = replace(sim_config(tmp_path / "kiosk", mosquitto.port, device_id="kiosk-e2e",
                                outbox=replace(QUICK, backend_alarm_s=3.0)),
                     telemetry=TelemetrySection(interval_s=1.0))
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        _type_all(kiosk, _members(3))
        wait_for(lambda: "backend" in kiosk.app.problems, timeout=15,
                 what="the silent backend reported")
        assert kiosk.app.problems.text("backend") == (
            "backend: has not acknowledged check-ins for over 3 s")
        health = kiosk.app.health()
        assert (health.state, health.awaiting_backend, health.outbox_depth) == ("degraded", 3, 3)
        assert health.awaiting_oldest_s >= 3 and health.backend_silent_s >= 3
        assert health.unsent == 0 and health.delivered == 0
        # The shop owner and staff see the same: status, doctor and the fleet list.
        path = tmp_path / "kiosk.toml"
        path.write_text(to_toml(config))
        time.sleep(1.5)  # a health report with the alarm in it is retained
        out = io.StringIO()
        assert status.main(str(path), out) == 1
        assert "state    degraded: backend: has not acknowledged check-ins" in out.getvalue()
        assert "delivery 3 await the backend (oldest stored " in out.getvalue()
        assert "0 not sent yet" in out.getvalue()
        out = io.StringIO()
        doctor.report(doctor.delivery(config, time.time()), out)
        assert "[warn] delivery: 3 await the backend" in out.getvalue()
        staff = tmp_path / "kioskctl.toml"
        staff.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n')
        listing = io.StringIO()
        with contextlib.redirect_stdout(listing):
            assert kioskctl.main(["--config", str(staff), "list"]) == 0
        row = next(line for line in listing.getvalue().splitlines() if "kiosk-e2e" in line)
        assert " degraded " in row and " 3 (" in row, listing.getvalue()  # AWAIT: 3 (4s)
        backend = _backend(mosquitto, ledger)  # it comes: the rest goes at once
        try:
            kiosk.wait_credited(3, timeout=30)
            wait_for(lambda: "backend" not in kiosk.app.problems, what="the problem cleared")
            assert kiosk.app.problems.state == "ready"
        finally:
            backend.stop()
    finally:
        kiosk.stop()


@pytest.mark.parametrize("version", PROTOCOLS)
def test_a_broker_killed_while_the_backend_is_away_loses_no_check_in(tmp_path, ledger, version):
    """The broker has acknowledged every check-in and queued them for the absent backend, then
    dies without persistence: on today's code 40 of 40 were lost, on both protocols."""
    broker = Mosquitto(tmp_path / "broker", persistence=False)
    broker.start()
    _backend(broker, ledger).stop()
    kiosk = _kiosk(tmp_path / "kiosk", broker, version).start()
    members = _members(40)
    try:
        kiosk.wait_online()
        _type_all(kiosk, members)
        wait_for(lambda: kiosk.app.delivery.publisher.published >= 40, what="the broker took all")
        broker.kill()
        broker.start()
        backend = _backend(broker, ledger)
        try:
            kiosk.wait_credited(40, timeout=60)
            _credited_once(ledger, members)
        finally:
            backend.stop()
    finally:
        kiosk.stop()
        broker.stop()
