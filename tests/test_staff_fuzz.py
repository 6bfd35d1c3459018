"""Fuzzing staff topics: thousands of hostile commands and desired configs, each refused.

Made with the same generator as the reply fuzz (:mod:`kiosk.testing.fuzz`), from two
templates each: the envelope itself (its ``v``, ``body``, ``kid``, ``sig``) and the
signed body inside an otherwise genuine envelope (every field of the order). No
case can be valid: any change to a signed body breaks its signature.
"""

from __future__ import annotations

import collections
import json
import random
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.config import Config
from kiosk.mqtt import protocol
from kiosk.provisioning import overlay
from kiosk.staff.issuer import Issuer
from kiosk.testing.fuzz import Case, hostile_payloads
from kiosk.testing.harness import wait_for
from kiosk.testing.staff import target_of, trusting, wait_listening
from kiosk.trust.signing import Signer

PER_TEMPLATE = 800


@pytest.fixture
def kiosk_config(kiosk_config: Config, staff_key: Signer) -> Config:
    return trusting(kiosk_config, staff_key)


def _unchanged(payload: bytes, body: dict) -> bool:
    try:
        return bool(json.loads(payload) == body)
    except (ValueError, RecursionError):
        return False


def hostile(sealed: bytes, seed: int) -> list[Case]:
    """Cases from the envelope, then from its body (re-sealed in the genuine envelope).

    The body has no ``v``: the generator's "remove v" leaves it as signed, so such
    no-op cases are left out (they would be genuine orders).
    """
    envelope = json.loads(sealed)
    outer = hostile_payloads(envelope, PER_TEMPLATE, seed=seed)
    inner = [case for case in hostile_payloads(envelope["body"], PER_TEMPLATE, seed=seed + 1)
             if not _unchanged(case.payload, envelope["body"])]
    head, tail = b'{"v":1,"body":', json.dumps(
        {"kid": envelope["kid"], "sig": envelope["sig"]}).encode()[1:]
    return outer + [Case(case.kind, head + case.payload + b"," + tail) for case in inner]


def test_three_thousand_hostile_staff_messages_are_refused_and_change_nothing(
        kiosk, staff, issuer, backend, ledger):
    wait_listening(staff, kiosk)
    app = kiosk.app
    target = target_of(kiosk)
    _, command = issuer.command(target, "restart")
    _, config = issuer.config(target, 1, {"counter": {"reply_timeout_s": 9.0}})
    commands = hostile(command, seed=11)
    configs = hostile(config, seed=21)
    group = protocol.command_topic("loyalty", name="restart")
    rng = random.Random(5)
    # QoS 0, as a flooding attacker would choose: the test broker saves its persistence
    # file after every change, which paces QoS 1 to ~60 messages/s; the count below
    # still proves every message arrived and was refused.
    attacker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer")
    attacker.connect(staff.broker.host, staff.broker.port)
    attacker.loop_start()
    try:
        infos = [attacker.publish(rng.choice([app.topics.command("restart"), group]),
                                  case.payload, qos=0) for case in commands]
        infos += [attacker.publish(app.topics.config_desired, case.payload, qos=0)
                  for case in configs]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        attacker.loop_stop()
        attacker.disconnect()
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


def test_the_fuzz_covers_every_kind_on_both_templates(issuer: Issuer):
    _, command = issuer.command("shop/k", "restart")
    kinds = collections.Counter(case.kind for case in hostile(command, seed=11))
    assert {"deep-nesting", "big-payload", "lone-surrogate", "bad-utf8", "non-finite",
            "duplicate-key", "wrong-type", "garbage"} <= set(kinds)
