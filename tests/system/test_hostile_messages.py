"""Hostile messages to a running kiosk: garbage in, a clear answer out, counted, and the
kiosk keeps serving the next customer."""

from __future__ import annotations

import collections
import json
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from kiosk.config import Config, CounterSection, TelemetrySection
from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import Sync, UnknownCard, Welcome
from kiosk.mqtt import protocol
from kiosk.provisioning import overlay
from kiosk.testing.fuzz import hostile_payloads
from kiosk.testing.harness import RunningKiosk, wait_for
from kiosk.testing.staff import target_of, trusting, wait_listening
from kiosk.trust.signing import Signer
from tests.payloads import order_fuzz, reply_fuzz

CREDITED = protocol.Ack.CREDITED


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
def test_a_malformed_reply_is_ignored_and_the_next_scan_still_works(kiosk, backend, intruder,
                                                                    payload):
    kiosk.wait_online()
    intruder.publish(kiosk.app.topics.reply, payload, qos=1).wait_for_publish(5)
    wait_for(lambda: kiosk.app.link.bad_messages == 1, what="the bad reply noticed")
    kiosk.show_card("LOY-BOB0002")
    wait_for(lambda: _synced(kiosk, "Bob"), what="Bob's balance")
    assert kiosk.app.link.alive()


def test_the_backend_rejects_a_malformed_check_in_and_keeps_crediting(kiosk, backend, ledger,
                                                                      intruder):
    kiosk.wait_online()
    intruder.publish("loyalty/test-shop/kiosk-test/evt/checkin", b'{"v":1,"seq":"one"}',
                      qos=1).wait_for_publish(5)
    wait_for(lambda: backend.rejected == 1, what="the rejection")
    kiosk.show_card("LOY-CAROL03")
    wait_for(lambda: ledger.balance("LOY-CAROL03") == 10, what="Carol credited")


def test_a_forged_answer_cannot_make_a_kiosk_send_batches(kiosk, backend, ledger, intruder):
    kiosk.wait_online()
    forged = protocol.encode_reply("e-forged", "LOY-ALICE01",
                                   MemberStatus("Alice", 1, "Bronze", 1, 0.1), CREDITED,
                                   batches=True)
    intruder.publish(kiosk.app.topics.reply, forged, qos=1).wait_for_publish(5)
    wait_for(lambda: kiosk.app.controller.replies_refused == 1, what="the forged answer")
    publisher = kiosk.app.delivery.publisher
    assert not publisher._batches  # it answered none of this kiosk's check-ins
    kiosk.type_code("LOY-ALICE01")  # the backend's own answer does
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10 and publisher._batches,
             what="Alice credited by a backend that takes batches")


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
        patient_kiosk, mosquitto, intruder):
    kiosk = patient_kiosk
    event_id = _checked_in(kiosk, mosquitto, "LOY-ALICE01")
    pwned = MemberStatus("Pwned!", 999_999, "Gold", 0, 1.0)
    mallory = MemberStatus("Mallory", 123_456, "Gold", 0, 1.0)
    forgeries = [
        # the check-in on screen; a real member, no check-in
        protocol.encode_reply(event_id, "LOY-MALLORY1", pwned, CREDITED),
        protocol.encode_reply(uuid7(), "LOY-ALICE01", mallory, CREDITED),
    ]
    for forged in forgeries:
        intruder.publish(kiosk.app.topics.reply, forged, qos=1).wait_for_publish(5)
    wait_for(lambda: kiosk.app.controller.replies_refused == 2, what="both refused")
    screen = kiosk.app.screen
    assert screen == Welcome(None, Sync.WAITING)  # Alice, never seen before, still waiting
    assert _cache(kiosk) == {}
    # The genuine reply still lands on screen and in the cache.
    alice = MemberStatus("Alice", 10, "Bronze", 40, 0.2)
    intruder.publish(kiosk.app.topics.reply,
                     protocol.encode_reply(event_id, "LOY-ALICE01", alice, CREDITED),
                     qos=1).wait_for_publish(5)
    wait_for(lambda: _synced(kiosk, "Alice"), what="the genuine reply on screen")
    wait_for(lambda: _cache(kiosk).get("LOY-ALICE01", {}).get("balance") == 10,
             what="the genuine reply cached")


def test_a_hundred_one_mib_names_do_not_grow_the_database(kiosk, mosquitto, intruder):
    event_id = _checked_in(kiosk, mosquitto, "LOY-ALICE01")
    state = Path(kiosk.config.kiosk.state_dir)
    before = sum(path.stat().st_size for path in state.glob("kiosk.db*"))
    # Even for the right check-in and member (an attacker who reads the traffic).
    huge = protocol.encode_reply(event_id, "LOY-ALICE01",
                                 MemberStatus("M" * (1 << 20), 1, "Gold", 0, 1.0), CREDITED)
    for _ in range(100):
        intruder.publish(kiosk.app.topics.reply, huge, qos=1)
    wait_for(lambda: kiosk.app.link.bad_messages == 100, timeout=90, what="all 100 refused")
    after = sum(path.stat().st_size for path in state.glob("kiosk.db*"))
    assert after - before < 64 * 1024
    assert _cache(kiosk) == {}


def _flood(client: mqtt.Client, topic: str, payloads: list[bytes]) -> None:
    """Publish all at QoS 0 (20 times quicker here than 2,000 PUBACKs), the last at QoS 1.

    Its PUBACK means the broker has taken every one before it, in order.
    """
    for payload in payloads[:-1]:
        client.publish(topic, payload, qos=0)
    client.publish(topic, payloads[-1], qos=1).wait_for_publish(30)


def test_two_thousand_hostile_replies_are_counted_and_the_next_customer_is_served(
        kiosk_config, intruder, backend, ledger):
    config = replace(kiosk_config, counter=CounterSection(reply_timeout_s=3, result_screen_s=60))
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: _synced(kiosk, "Alice"), what="Alice's reply")
        [(event_id, *_)] = ledger.visits(kiosk.app.device_id)
        state = Path(config.kiosk.state_dir)

        # Replies for the check-in on screen, by someone who read its event id: the
        # strongest position an attacker on the reply topic can have.
        cases = reply_fuzz(event_id, "LOY-ALICE01", 2000, seed=5)
        _flood(intruder, kiosk.app.topics.reply, [case.payload for case in cases])

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
        kiosk.stop()


def test_the_backend_refuses_a_thousand_broken_check_ins_and_keeps_crediting(kiosk, intruder,
                                                                            backend, ledger):
    checkin = CheckIn(uuid7(), "kiosk-test", "b00t", 1, 1795388285.351, "LOY-MALLORY1", "serial")
    cases = hostile_payloads(json.loads(protocol.encode_checkin(checkin)), 1000, seed=9)
    assert not any(case.valid for case in cases)  # no free text: every case is broken
    _flood(intruder, kiosk.app.topics.checkin, [case.payload for case in cases])
    wait_for(lambda: backend.rejected == len(cases), 30, "every broken check-in refused")
    assert ledger.balance("LOY-MALLORY1") == 0
    kiosk.wait_online()
    kiosk.type_code("LOY-ALICE01")
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="a real check-in credited")
    assert backend.rejected == len(cases)


def test_a_batch_with_broken_check_ins_is_refused_one_by_one_and_its_good_one_credited(
        kiosk, intruder, backend, ledger):
    def named(member: str, device: str = "kiosk-test") -> bytes:
        return protocol.encode_checkin(CheckIn(uuid7(), device, "b00t", 1, 1795388285.351,
                                               member, "serial"))

    broken = [named("LOY-MALLORY1").replace(b'"seq":1', b'"seq":"one"'),
              named("LOY-MALLORY1").replace(b'"source":"serial"', b'"source":7'),
              named("LOY-MALLORY1", device="kiosk-other"),  # in another kiosk's name
              b'{"v":1,"seq":2}',  # names no event: nothing to answer, counted
              b'"not a check-in"']
    batch = protocol.encode_checkins([*broken[:2], named("LOY-BOB0002"), *broken[2:]])
    _flood(intruder, kiosk.app.topics.checkins, [batch, b"not json", b'{"v":1,"checkins":3}'])
    wait_for(lambda: backend.rejected == len(broken) + 2 and ledger.balance("LOY-BOB0002") == 10,
             what="each broken one refused, the whole-batch garbage too, Bob credited")
    assert ledger.balance("LOY-MALLORY1") == 0
    kiosk.wait_online()
    kiosk.type_code("LOY-ALICE01")
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="a real check-in credited")


@pytest.fixture
def trusting_kiosk(kiosk_config: Config, staff_key: Signer) -> Iterator[RunningKiosk]:
    """A kiosk that takes orders signed by ``staff_key``."""
    kiosk = RunningKiosk(trusting(kiosk_config, staff_key)).start()
    try:
        yield kiosk
    finally:
        kiosk.stop()


def test_three_thousand_hostile_staff_messages_are_refused_and_change_nothing(
        trusting_kiosk, staff, issuer, intruder, backend, ledger):
    kiosk = trusting_kiosk
    wait_listening(staff, kiosk)
    app = kiosk.app
    target = target_of(kiosk)
    _, command = issuer.command(target, "restart")
    _, config = issuer.config(target, 1, {"counter": {"reply_timeout_s": 9.0}})
    commands = order_fuzz(command, seed=11)
    configs = order_fuzz(config, seed=21)
    group = protocol.command_topic("loyalty", name="restart")
    rng = random.Random(5)
    # QoS 0, as a flooding attacker would choose: the test broker saves its persistence
    # file after every change, which paces QoS 1 to ~60 messages/s; the count below
    # still proves every message arrived and was refused.
    infos = [intruder.publish(rng.choice([app.topics.command("restart"), group]),
                              case.payload, qos=0) for case in commands]
    infos += [intruder.publish(app.topics.config_desired, case.payload, qos=0)
              for case in configs]
    for info in infos:
        info.wait_for_publish(60)
    sent = len(commands) + len(configs)
    assert sent >= 3000 and not any(case.valid for case in commands + configs)
    wait_for(lambda: app.staff.rejected + app.inbox.dropped_messages >= sent, 120,
             "every hostile message to be refused")
    assert app.staff.rejected + app.inbox.dropped_messages == sent, collections.Counter(
        case.kind for case in commands + configs)
    assert app.staff.carried_out == 0 and kiosk.restarts == 0 and app.link.alive()
    assert app.staff.unanswered > sent // 2  # junk is counted, not answered one by one
    assert app.config == kiosk.config
    folder = overlay.folder_of(kiosk.config)
    assert not folder.exists() or not any(folder.iterdir())  # nothing written for junk
    with sqlite3.connect(Path(kiosk.config.kiosk.state_dir) / "kiosk.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM staff_seq").fetchone() == (0,)
    print(f"staff fuzz: {sent} sent, {app.staff.rejected} refused, "
          f"{app.inbox.dropped_messages} dropped at the inbox; kinds "
          f"{dict(collections.Counter(case.kind for case in commands + configs))}")

    # Still serving: a genuine command is carried out, a customer's visit is delivered.
    staff.results.clear()
    order, ping = issuer.command(target, "ping")
    staff.send(app.topics.command("ping"), ping)
    results = staff.wait(lambda: staff.results_for(order.cmd_id), 20)
    assert results and results[0][1]["status"] == "ok"
    kiosk.type_code("LOY-ALICE01")
    wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, 20, "the visit credited")


@pytest.mark.parametrize(("line", "reason"), [
    (b"\xff\xfeLOY-\x80ALICE", "Unreadable code"),       # not UTF-8
    (b"LOY-AL\x1b[2JICE01", "Unreadable code"),            # a control character
    (b"LOY-" + b"A" * 5000, "Code too long"),              # far over the limit, one line
    ("LOY-€".encode() + "€".encode() * 700, "Code too long"),  # long in characters too
])
def test_a_refused_serial_line_is_shown_counted_and_reported(kiosk_config, mosquitto, line,
                                                             reason):
    config = replace(kiosk_config, telemetry=TelemetrySection(interval_s=1.0))
    with mosquitto.listen("loyalty/test-shop/kiosk-test/tele/health") as reports:
        kiosk = RunningKiosk(config).start()
        try:
            kiosk.wait_online()
            kiosk.app.sim.serial.send(line + b"\r")
            wait_for(lambda: kiosk.app.screen == UnknownCard(reason), what=reason)
            assert kiosk.app.controller.codes_refused == 1
            wait_for(lambda: any(json.loads(r)["codes_refused"] == 1 for r in reports),
                     what="the refusal counted in health")
            kiosk.type_code("LOY-ALICE01")  # the next customer is served
            wait_for(lambda: kiosk.app.checkins_recorded == 1, what="the next check-in")
        finally:
            kiosk.stop()
