"""Garbage in, a clear answer out — and the kiosk keeps serving the next customer."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.config import CounterSection, OutboxSection
from kiosk.counter.checkin import uuid7
from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import NotRecorded, Sync, UnknownCard, Welcome
from kiosk.mqtt import protocol
from kiosk.testing.harness import RunningKiosk, wait_for


@pytest.fixture
def publisher(mosquitto):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-intruder")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def _synced(kiosk, name: str) -> bool:
    screen = kiosk.app.screen
    return (isinstance(screen, Welcome) and screen.sync is Sync.SYNCED
            and screen.status.display_name == name)


def test_an_unknown_card_is_refused_on_screen_and_nothing_is_sent(kiosk, backend, ledger):
    kiosk.wait_online()
    kiosk.show_card("https://example.com/not-a-member")
    wait_for(lambda: isinstance(kiosk.app.screen, UnknownCard), what="the unknown-card screen")
    wait_for(lambda: kiosk.app.hardware.lights.current == "error", what="the red blinks")
    kiosk.type_code("\x02LOY-ALICE01\x03")  # STX/ETX framing from a scanner is not the code
    wait_for(lambda: _synced(kiosk, "Alice"), what="the member after")
    assert kiosk.app.checkins_recorded == 1
    assert [m for _, _, m, _ in ledger.visits(kiosk.app.device_id)] == ["LOY-ALICE01"]


@pytest.mark.parametrize("payload", [
    b"not json at all",
    b'{"v": 99, "event_id": "x"}',
    b'{"v": 1, "event_id": "x", "member_id": "LOY-X1234", "balance": "lots"}',
    b"[1, 2, 3]",
    b"\xff\xfe\x00",
])
def test_a_malformed_reply_is_ignored_and_the_next_scan_still_works(kiosk, backend, publisher,
                                                                    payload):
    kiosk.wait_online()
    publisher.publish(kiosk.app.topics.reply, payload, qos=1).wait_for_publish(5)
    wait_for(lambda: kiosk.app.link.bad_messages == 1, what="the bad reply noticed")
    kiosk.show_card("LOY-BOB0002")
    wait_for(lambda: _synced(kiosk, "Bob"), what="Bob's balance")
    assert kiosk.app.link.alive()


def test_the_backend_rejects_a_malformed_check_in_and_keeps_crediting(kiosk, backend, ledger,
                                                                      publisher):
    kiosk.wait_online()
    publisher.publish("loyalty/test-shop/kiosk-test/evt/checkin", b'{"v":1,"seq":"one"}',
                      qos=1).wait_for_publish(5)
    wait_for(lambda: backend.rejected == 1, what="the rejection")
    kiosk.show_card("LOY-CAROL03")
    wait_for(lambda: ledger.balance("LOY-CAROL03") == 10, what="Carol credited")


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


def _checked_in(kiosk, mosquitto, member: str) -> str:
    """Scan ``member`` on a kiosk with no backend listening; the event id it sent."""
    kiosk.wait_online()
    with mosquitto.listen(kiosk.app.topics.checkin) as sent:
        kiosk.type_code(member)
        wait_for(lambda: sent, what="the check-in on the broker")
    return json.loads(sent[0])["event_id"]


def _cache(kiosk) -> dict[str, dict]:
    with sqlite3.connect(Path(kiosk.config.kiosk.state_dir) / "kiosk.db") as conn:
        return {member: json.loads(status)
                for member, status in conn.execute("SELECT member_id, status FROM members")}


@pytest.fixture
def patient_kiosk(kiosk_config):
    """A kiosk that keeps a check-in's screen up and waits long for its reply."""
    config = replace(kiosk_config, counter=CounterSection(reply_timeout_s=60, result_screen_s=60))
    kiosk = RunningKiosk(config).start()
    yield kiosk
    kiosk.stop()


def test_a_forged_reply_cannot_greet_the_customer_or_rewrite_a_members_cache(
        patient_kiosk, mosquitto, publisher):
    kiosk = patient_kiosk
    event_id = _checked_in(kiosk, mosquitto, "LOY-ALICE01")
    pwned = MemberStatus("Pwned!", 999_999, "Gold", 0, 1.0)
    mallory = MemberStatus("Mallory", 123_456, "Gold", 0, 1.0)
    forgeries = [
        protocol.encode_reply(event_id, "LOY-MALLORY1", pwned),  # the check-in on screen
        protocol.encode_reply(uuid7(), "LOY-ALICE01", mallory),  # a real member, no check-in
    ]
    for forged in forgeries:
        publisher.publish(kiosk.app.topics.reply, forged, qos=1).wait_for_publish(5)
    wait_for(lambda: kiosk.app.controller.replies_refused == 2, what="both refused")
    screen = kiosk.app.screen
    assert screen == Welcome(None, Sync.WAITING)  # Alice, never seen before, still waiting
    assert _cache(kiosk) == {}
    # The genuine reply still lands on screen and in the cache.
    alice = MemberStatus("Alice", 10, "Bronze", 40, 0.2)
    publisher.publish(kiosk.app.topics.reply, protocol.encode_reply(event_id, "LOY-ALICE01", alice),
                      qos=1).wait_for_publish(5)
    wait_for(lambda: _synced(kiosk, "Alice"), what="the genuine reply on screen")
    wait_for(lambda: _cache(kiosk).get("LOY-ALICE01", {}).get("balance") == 10,
             what="the genuine reply cached")


def test_a_hundred_one_mib_names_do_not_grow_the_database(kiosk, mosquitto, publisher):
    event_id = _checked_in(kiosk, mosquitto, "LOY-ALICE01")
    state = Path(kiosk.config.kiosk.state_dir)
    before = sum(path.stat().st_size for path in state.glob("kiosk.db*"))
    # Even for the right check-in and member (an attacker who reads the traffic).
    huge = protocol.encode_reply(event_id, "LOY-ALICE01",
                                 MemberStatus("M" * (1 << 20), 1, "Gold", 0, 1.0))
    for _ in range(100):
        publisher.publish(kiosk.app.topics.reply, huge, qos=1)
    wait_for(lambda: kiosk.app.link.bad_messages == 100, timeout=90, what="all 100 refused")
    after = sum(path.stat().st_size for path in state.glob("kiosk.db*"))
    assert after - before < 64 * 1024
    assert _cache(kiosk) == {}
