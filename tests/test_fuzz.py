"""Fuzzing what the kiosk receives: thousands of hostile replies, each refused and counted."""

from __future__ import annotations

import collections
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.config import CounterSection
from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import Sync, Welcome
from kiosk.mqtt import protocol
from kiosk.mqtt.wire import ProtocolError
from kiosk.testing.fuzz import hostile_payloads
from kiosk.testing.harness import RunningKiosk, wait_for

FREE_TEXT = ("display_name", "tier", "reward_unlocked", "next_reward", "badge")
OPTIONAL = ("reward_unlocked", "next_reward", "points_earned", "tier_changed", "badge")
ALICE = MemberStatus("Alice", 10, "Bronze", 40, 0.2, "Free coffee")


def _template(event_id: str, member_id: str) -> dict:
    return json.loads(protocol.encode_reply(event_id, member_id, ALICE))


def _fuzz(event_id: str, member_id: str, count: int, seed: int):
    return hostile_payloads(_template(event_id, member_id), count, seed=seed,
                            free_text=FREE_TEXT, optional=OPTIONAL)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_decoder_refuses_every_broken_reply_and_takes_every_valid_one(seed):
    cases = _fuzz("e1", "LOY-ALICE01", 3000, seed)
    assert {case.kind for case in cases} >= {"big-payload", "deep-nesting", "lone-surrogate",
                                            "non-finite", "odd-unicode", "bad-utf8"}
    for case in cases:
        try:
            protocol.decode_reply(case.payload)
        except ProtocolError:
            assert not case.valid, case.kind
        else:
            assert case.valid, (case.kind, case.payload[:200])


def test_the_fuzz_is_the_same_for_the_same_seed():
    assert _fuzz("e1", "m", 200, 7) == _fuzz("e1", "m", 200, 7)
    assert _fuzz("e1", "m", 200, 7) != _fuzz("e1", "m", 200, 8)


def _synced(kiosk, name: str) -> bool:
    screen = kiosk.app.screen
    return (isinstance(screen, Welcome) and screen.sync is Sync.SYNCED
            and screen.status.display_name == name)


def _flood(client: mqtt.Client, topic: str, payloads: list[bytes]) -> None:
    """Publish all at QoS 0 (20 times quicker here than 2,000 PUBACKs), the last at QoS 1.

    Its PUBACK means the broker has taken every one before it, in order.
    """
    for payload in payloads[:-1]:
        client.publish(topic, payload, qos=0)
    client.publish(topic, payloads[-1], qos=1).wait_for_publish(30)


def test_two_thousand_hostile_replies_are_counted_and_the_next_customer_is_served(
        kiosk_config, mosquitto, backend, ledger, tmp_path):
    config = replace(kiosk_config, counter=CounterSection(reply_timeout_s=3, result_screen_s=60))
    kiosk = RunningKiosk(config).start()
    attacker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer")
    attacker.connect(mosquitto.host, mosquitto.port)
    attacker.loop_start()
    try:
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: _synced(kiosk, "Alice"), what="Alice's reply")
        [(event_id, *_)] = ledger.visits(kiosk.app.device_id)
        state = Path(config.kiosk.state_dir)

        # Replies for the check-in on screen, by someone who read its event id: the
        # strongest position an attacker on the reply topic can have.
        cases = _fuzz(event_id, "LOY-ALICE01", 2000, seed=5)
        _flood(attacker, kiosk.app.topics.reply, [case.payload for case in cases])

        kiosk.type_code("LOY-BOB0002")  # its reply comes after every fuzzed one
        wait_for(lambda: _synced(kiosk, "Bob"), 30, "the next customer served")
        assert ledger.balance("LOY-BOB0002") == 10

        valid = sum(case.valid for case in cases)
        refused = kiosk.app.link.bad_messages + kiosk.app.controller.replies_refused
        assert refused == len(cases) - valid, collections.Counter(
            case.kind for case in cases)
        assert kiosk.app.inbox.dropped_messages == 0
        assert kiosk.app.link.alive()
        # The valid ones rewrote Alice's cache entry; nothing else was stored.
        with sqlite3.connect(state / "kiosk.db") as conn:
            cached = {member: json.loads(status) for member, status in
                      conn.execute("SELECT member_id, status FROM members")}
        assert set(cached) == {"LOY-ALICE01", "LOY-BOB0002"}
        assert len(json.dumps(cached)) < 2048
    finally:
        attacker.loop_stop()
        attacker.disconnect()
        kiosk.stop()


def test_the_backend_refuses_a_thousand_broken_check_ins_and_keeps_crediting(kiosk, mosquitto,
                                                                            backend, ledger):
    checkin = CheckIn(uuid7(), "kiosk-test", "b00t", 1, 1795388285.351, "LOY-MALLORY1", "serial")
    cases = hostile_payloads(json.loads(protocol.encode_checkin(checkin)), 1000, seed=9)
    assert not any(case.valid for case in cases)  # no free text: every case is broken
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="broken-kiosk")
    sender.connect(mosquitto.host, mosquitto.port)
    sender.loop_start()
    try:
        _flood(sender, kiosk.app.topics.checkin, [case.payload for case in cases])
        wait_for(lambda: backend.rejected == len(cases), 30, "every broken check-in refused")
        assert ledger.balance("LOY-MALLORY1") == 0
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="a real check-in credited")
        assert backend.rejected == len(cases)
    finally:
        sender.loop_stop()
        sender.disconnect()
