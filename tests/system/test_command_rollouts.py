"""Staged rollouts of a signed command, and of a software update (the ``update`` command),
with the real kioskctl against a simulated fleet on a real mosquitto."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from kiosk.mqtt import protocol
from kiosk.staff.keyring import Keyring
from kiosk.staff.kinds import order_id
from kiosk.staff.kioskctl import OK, REFUSED
from kiosk.staff.rollout import Record, Rule, rank
from kiosk.testing.fleet import FIRMWARE, device_name, release_manifest
from kiosk.testing.harness import wait_for

COUNT, SITES = 20, 2
ROLLOUT = "update-1"
TARGET = "2.0.0"
UPDATE = json.dumps({"manifest": release_manifest(TARGET), "downgrade": False})


def _site(index: int) -> str:
    return f"site-{index % SITES:02d}"


CANARY = device_name(min(range(COUNT), key=lambda i: rank(ROLLOUT, _site(i), device_name(i))))
"""The first kiosk of rollout ``update-1``'s order: its new release never becomes healthy."""


@pytest.fixture
def fleet_shape() -> dict[str, Any]:
    return {"count": COUNT, "sites": SITES, "per_connection": 10, "failing_updates": [CANARY]}


def test_a_command_rolls_out_in_phases_and_waits_for_an_offline_kiosk(kioskctl, sim_fleet):
    away = device_name(COUNT - 1)
    sim_fleet.take_offline([away])
    code, record = kioskctl.json("rollout", "start", "--command", "restart", "--all",
                              "--canary", "2", "--phases", "50,100", "--answer-s", "10")
    assert code == OK and record["state"] == "done" and record["kind"] == "command"
    assert len(record["sent_at"]) == 3
    outcomes = {device: o["outcome"] for device, o in record["outcomes"].items()}
    assert outcomes.pop(away) == "pending"
    assert set(outcomes.values()) == {"applied"}
    assert {k.restarts for name, k in sim_fleet.kiosks.items() if name != away} == {1}
    sim_fleet.bring_online([away])  # its session kept the order: it runs it now
    wait_for(lambda: sim_fleet.kiosks[away].restarts == 1, 20, "the returning kiosk's restart")


def test_a_command_the_canary_refuses_stops_the_rollout(kioskctl, sim_fleet):
    code, out, _ = kioskctl("rollout", "start", "--command", "set-brightness", "--args",
                         '{"level": 80}', "--all", "--canary", "1", "--answer-s", "10")
    assert code == REFUSED, out
    assert "1 refused" in out and f"{COUNT - 1} not sent" in out
    code, record = kioskctl.json("rollout", "status")
    assert code == OK and record[0]["state"] == "aborted"


def test_arguments_that_are_not_a_json_object_are_a_clear_error(kioskctl, sim_fleet):
    code, _, err = kioskctl("rollout", "start", "--command", "ping", "--args", "[1]", "--all")
    assert code == 1 and "--args" in err and "JSON object" in err


def test_an_update_rolls_back_on_the_canary_stops_and_resumes_to_the_rest(
        kioskctl, sim_fleet, tmp_path):
    manifest = tmp_path / "manifest.json"  # what `kioskctl release sign` writes
    manifest.write_text(json.dumps(release_manifest(TARGET)))
    code, out, _ = kioskctl("rollout", "start", "--update", str(manifest), "--all",
                         "--id", ROLLOUT, "--canary", "1", "--phases", "50,100",
                         "--max-bad", "0", "--answer-s", "10")
    assert code == REFUSED, out
    assert "1 rolled back" in out and f"{COUNT - 1} not sent" in out
    code, record = kioskctl.json("rollout", "status", ROLLOUT)
    assert record["kind"] == "update" and record["outcomes"][CANARY]["outcome"] == "rolled back"
    assert sim_fleet.release(CANARY)["running"] == FIRMWARE

    code, record = kioskctl.json("rollout", "resume", ROLLOUT)
    assert code == OK and record["state"] == "done"
    applied = [d for d, o in record["outcomes"].items() if o["outcome"] == "applied"]
    assert len(applied) == COUNT - 1
    assert {sim_fleet.release(device)["running"] for device in applied} == {TARGET}


def test_an_update_refused_by_the_kiosk_is_refused_with_its_reason(kioskctl, sim_fleet):
    older = json.dumps({"manifest": release_manifest("0.0.1"), "downgrade": False})
    code, record = kioskctl.json("rollout", "start", "--command", "update", "--args", older,
                              device_name(3), "--answer-s", "10")
    assert code == REFUSED and record["state"] == "aborted"
    assert record["outcomes"][device_name(3)]["outcome"] == "refused"
    assert "downgrade" in record["outcomes"][device_name(3)]["reason"]


def test_an_update_needs_a_manifest_that_names_its_version(kioskctl, sim_fleet, tmp_path):
    code, _, err = kioskctl("rollout", "start", "--command", "update", "--args",
                         '{"manifest": {"version": "2.0"}}', "--all")
    assert code == 1 and "signed manifest" in err
    code, _, err = kioskctl("rollout", "start", "--update", str(tmp_path / "none.json"), "--all")
    assert code == 1 and "none.json" in err
    unsigned = {k: v for k, v in release_manifest(TARGET).items() if k != "sig"}
    (tmp_path / "unsigned.json").write_text(json.dumps(unsigned))
    code, _, err = kioskctl("rollout", "start", "--update", str(tmp_path / "unsigned.json"),
                         "--all")
    assert code == 1 and "is it signed?" in err


def test_a_kiosk_cannot_answer_for_another_in_a_rollout(kioskctl, sim_fleet, intruder):
    """A kiosk certificate may write its own results, and a rollout's order ids can be worked
    out from kiosk names: a result naming another kiosk's order counts for nobody."""
    rollout_id = "forged-1"
    order = sorted(range(COUNT), key=lambda i: rank(rollout_id, _site(i), device_name(i)))
    canary, forger = order[0], order[-1]
    forged = protocol.encode_result(order_id(rollout_id, _site(canary), device_name(canary)),
                                    False, "forged refusal", None)
    intruder.publish(protocol.Topics("loyalty", _site(forger), device_name(forger))
                     .command_result("restart"), forged, qos=1, retain=True).wait_for_publish(5)
    code, record = kioskctl.json("rollout", "start", "--command", "restart", "--all",
                                 "--id", rollout_id, "--canary", "1", "--phases", "100",
                                 "--max-bad", "0", "--answer-s", "10")
    assert code == OK and record["state"] == "done", record["reason"]
    assert record["outcomes"][device_name(canary)]["outcome"] == "applied"


def test_a_command_rollout_paused_elsewhere_resumes_without_judging_what_it_did_not_hear(
        kioskctl, sim_fleet, intruder):
    """Another staff machine sent the canary its order and paused; the results went to that
    machine. Resumed here, the canary is not counted as silent: the rollout goes on."""
    keyring = Keyring(kioskctl.keys)
    issuer, _name = keyring.issuer("alice")
    rollout_id, now = "paused-1", round(time.time(), 3)
    order = sorted(range(COUNT), key=lambda i: rank(rollout_id, _site(i), device_name(i)))
    canary = [(device_name(i), _site(i)) for i in order[:2]]
    heard: list[str] = []  # the other machine's ears: the results go there, and only there
    intruder.on_message = lambda _c, _u, message: heard.append(message.topic)
    subscribed = threading.Event()
    intruder.on_subscribe = lambda *_args: subscribed.set()
    intruder.subscribe(protocol.Topics("loyalty", "+", "+").command_result("restart"), 1)
    assert subscribed.wait(10)
    for device, site in canary:
        _order, payload = issuer.command(f"{site}/{device}", "restart", cmd_id=order_id(
            rollout_id, site, device))
        intruder.publish(protocol.Topics("loyalty", site, device).command("restart"), payload,
                         qos=1).wait_for_publish(5)
    keyring.save_seq("alice", issuer)
    wait_for(lambda: len(heard) == 2, 20, "the canary's results, heard elsewhere")
    record = Record(rollout_id, {}, {"all": True}, 2, [100.0], Rule(0.0, 1, 5.0), "bob", now,
                    state="paused", sent_at=[now], kind="command", sent=2,
                    command={"name": "restart", "args": {}})
    intruder.publish(protocol.rollout_topic("loyalty", rollout_id), record.to_json(), qos=1,
                     retain=True).wait_for_publish(5)
    code, resumed = kioskctl.json("rollout", "resume", rollout_id)
    assert code == OK and resumed["state"] == "done", resumed["reason"]
    assert {k.restarts for k in sim_fleet.kiosks.values()} == {1}
