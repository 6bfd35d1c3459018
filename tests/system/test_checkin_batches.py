"""Check-ins in batches, as a backend meets them: real mosquitto, the real kiosk and the real
reference backend. A rush at the counter reaches the ledger in a few messages and every visit
is credited once, on MQTT 5 and 3.1.1; a backend written before batches gets every check-in
one a message; a batch nobody takes goes again at once, one a message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from backend import Ledger, LoyaltyBackend
from kiosk.mqtt import protocol
from kiosk.testing.broker import Mosquitto, free_port
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for

DEVICE = "kiosk-batch"
EVERY_CHECKIN = "loyalty/+/+/evt/#"
SINGLES = protocol.checkins_of_all_kiosks("loyalty")
"""What a test listens to when no backend may hear batches: a listener on ``evt/#`` would take
them itself (the broker then has a subscriber for them)."""


class _WithoutBatches(LoyaltyBackend):
    """A backend written before batches: it subscribes to ``evt/checkin`` alone and its answers
    do not say it takes batches."""

    batches = False


class _SaysBatchesButHearsNone(LoyaltyBackend):
    """A backend whose answers say it takes batches while nothing subscribes to
    ``evt/checkins`` (the instance that took them has gone; a hand-made subscription)."""

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(protocol.checkins_of_all_kiosks(self.broker.topic_prefix), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any,
                      properties: Any) -> None:
        super()._on_subscribe(client, userdata, mid, codes, properties)
        self._says_batches = True


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    book = Ledger(tmp_path / "ledger.db")
    yield book
    book.close()


@pytest.fixture
def backend_of(mosquitto: Mosquitto, ledger: Ledger) -> Iterator[Any]:
    started: list[LoyaltyBackend] = []

    def start(kind: type[LoyaltyBackend] = LoyaltyBackend) -> LoyaltyBackend:
        service = kind(mosquitto.host, mosquitto.port, ledger)
        service.start()
        started.append(service)
        assert service.connected.wait(10), "backend did not subscribe"
        return service

    yield start
    for service in started:
        service.stop()


def _rush(tmp_path: Path, mosquitto: Mosquitto, members: list[str], version: str = "5",
          listen: str = EVERY_CHECKIN) -> tuple[RunningKiosk, list[bytes]]:
    """Members scanned at the serial reader twenty at a time (the scan lane holds 64), until
    the backend has credited all; returns the stopped kiosk and every check-in message
    published on ``listen``."""
    config = sim_config(tmp_path / "kiosk", mosquitto.port, device_id=DEVICE)
    kiosk = RunningKiosk(replace(config, mqtt=replace(config.mqtt, protocol=version))).start()
    with mosquitto.listen(listen) as messages:
        try:
            kiosk.wait_online()
            for first in range(0, len(members), 20):
                for member in members[first:first + 20]:
                    kiosk.type_code(member)
                done = first + len(members[first:first + 20])
                wait_for(lambda d=done: kiosk.app.checkins_recorded >= d, what=f"{done} stored")
            kiosk.wait_credited(len(members), timeout=60)
        finally:
            kiosk.stop()
    return kiosk, messages


def _checkins_in(messages: list[bytes]) -> list[dict[str, Any]]:
    return [checkin for message in messages
            for checkin in json.loads(message).get("checkins", [json.loads(message)])]


def _credited_once(ledger: Ledger, members: list[str]) -> None:
    assert sorted(member for *_, member, _ in ledger.visits(DEVICE)) == sorted(members)
    assert all(ledger.balance(member) == 10 for member in members)


MEMBERS = [f"LOY-B{n:06d}" for n in range(100)]


def test_a_rush_reaches_the_ledger_in_a_few_messages_and_each_visit_is_credited_once(
        tmp_path, mosquitto, ledger, backend_of):
    backend_of()
    kiosk, messages = _rush(tmp_path, mosquitto, MEMBERS)
    _credited_once(ledger, MEMBERS)
    batches = [m for m in messages if b'"checkins"' in m]
    assert batches and len(messages) < len(MEMBERS), f"{len(messages)} messages"
    assert [c["member_id"] for c in _checkins_in(messages)] == MEMBERS  # in scan order, once
    publisher = kiosk.app.delivery.publisher
    assert (publisher.batches_unrouted, publisher.resent) == (0, 0)


def test_a_backend_without_batches_gets_every_check_in_one_a_message(
        tmp_path, mosquitto, ledger, backend_of):
    """Whoever else listens on ``evt/#`` (this test does), nothing goes in a batch to a
    backend that has not said it takes them."""
    backend_of(_WithoutBatches)
    kiosk, messages = _rush(tmp_path, mosquitto, MEMBERS)
    _credited_once(ledger, MEMBERS)
    assert not any(b'"checkins"' in m for m in messages) and len(messages) == len(MEMBERS)
    assert kiosk.app.delivery.publisher.resent == 0


def test_a_batch_nobody_takes_goes_again_at_once_one_a_message(tmp_path, mosquitto, ledger,
                                                               backend_of):
    backend_of(_SaysBatchesButHearsNone)
    kiosk, messages = _rush(tmp_path, mosquitto, MEMBERS, listen=SINGLES)
    _credited_once(ledger, MEMBERS)
    publisher = kiosk.app.delivery.publisher
    assert publisher.batches_unrouted >= 1 and publisher.refused == 0
    assert publisher.resent == 0  # at once, not after the acknowledgement timeout
    assert sorted({json.loads(m)["member_id"] for m in messages}) == MEMBERS  # all, alone


def test_during_an_upgrade_only_new_instances_get_batches_and_each_visit_is_credited_once(
        tmp_path, mosquitto, ledger):
    """Two instances share the check-ins (``$share``): one upgraded, one written before
    batches. Batches go only to the one that subscribes to them; singles to either."""
    new = LoyaltyBackend(mosquitto.host, mosquitto.port, ledger, client_id="backend-new",
                         share_group="chain")
    old = _WithoutBatches(mosquitto.host, mosquitto.port, ledger, client_id="backend-old",
                          share_group="chain")
    try:
        for instance in (new, old):
            instance.start()
            assert instance.connected.wait(10)
        kiosk, messages = _rush(tmp_path, mosquitto, MEMBERS)
        _credited_once(ledger, MEMBERS)
        assert any(b'"checkins"' in m for m in messages)
        assert new.received > 0 and old.received > 0  # both took their share
        publisher = kiosk.app.delivery.publisher
        assert (publisher.batches_unrouted, publisher.resent) == (0, 0)
    finally:
        new.stop()
        old.stop()


def test_on_mqtt_3_1_1_a_rush_goes_in_batches_too(tmp_path, mosquitto, ledger, backend_of):
    backend_of()
    _kiosk, messages = _rush(tmp_path, mosquitto, MEMBERS, version="3.1.1")
    _credited_once(ledger, MEMBERS)
    assert any(b'"checkins"' in m for m in messages) and len(messages) < len(MEMBERS)


def test_batches_fit_a_broker_with_a_smaller_packet_limit(tmp_path, ledger):
    """mosquitto's ``max_packet_size`` (announced in CONNACK on MQTT 5): a larger packet is
    not refused in a PUBACK, the client is disconnected."""
    limit = 4096  # about 16 check-ins, or answers
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port=port, drop_in=(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_packet_size {limit}\n"))
    broker.start()
    service = LoyaltyBackend(broker.host, broker.port, ledger)
    service.start()
    try:
        assert service.connected.wait(10)
        kiosk, messages = _rush(tmp_path, broker, MEMBERS)
        _credited_once(ledger, MEMBERS)
        assert max(map(len, messages)) <= limit and any(b'"checkins"' in m for m in messages)
        assert kiosk.app.link.connects == 1  # never disconnected for a packet too large
    finally:
        service.stop()
        broker.stop()


def test_a_backend_says_it_takes_batches_only_once_the_broker_granted_them(ledger):
    """A broker (or an auth plugin) that refuses the subscription to ``evt/checkins``: the
    backend's answers must not bring batches nobody will hear. mosquitto 2.0.11's
    ``acl_file`` grants every subscription (``src/security_default.c``: subscriptions are
    not checked, reads are), so the SUBACK is given here as paho makes it."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    service = LoyaltyBackend("127.0.0.1", free_port(), ledger)
    granted = ReasonCode(PacketTypes.SUBACK, identifier=1)
    refused = ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    service._on_subscribe(service._client, None, 1, [granted, refused], None)
    assert service.connected.is_set() and not service._says_batches
    service._on_subscribe(service._client, None, 2, [granted, granted], None)
    assert service._says_batches  # what its answers carry (``_credit``)
