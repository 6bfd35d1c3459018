"""Desired / reported config with versions, against a real mosquitto and a running kiosk."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kiosk.config import Config
from kiosk.mqtt.envelope import target_for
from kiosk.provisioning import overlay
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import Issuer
from kiosk.testing.harness import RunningKiosk, wait_for
from kiosk.testing.staff import reported, trusting
from kiosk.trust.signing import Signer


@pytest.fixture
def kiosk_config(kiosk_config: Config, staff_key: Signer) -> Config:
    mqtt = replace(kiosk_config.mqtt, username="kiosk-test", password="hunter2")
    return replace(trusting(kiosk_config, staff_key, rollback_after_s=3.0), mqtt=mqtt)


def push(staff: StaffClient, kiosk: RunningKiosk, issuer: Issuer, version: int,
         table: dict) -> str:
    order, payload = issuer.config(target_for(kiosk.config.kiosk.site, kiosk.app.device_id),
                                   version, table)
    staff.send(kiosk.app.topics.config_desired, payload, retain=True)
    return order.cmd_id


def test_a_desired_config_is_applied_persisted_and_reported_without_secrets(
        kiosk, staff, issuer):
    first = reported(staff, kiosk)
    assert first["version"] == 0 and first["config"]["mqtt"]["password"] == "(set)"
    cmd_id = push(staff, kiosk, issuer, 1, {"counter": {"reply_timeout_s": 5.0}})
    body = reported(staff, kiosk, lambda body: body["version"] == 1)
    assert body["cmd_id"] == cmd_id and body["rejected"] is None
    assert body["config"]["counter"]["reply_timeout_s"] == 5.0
    assert "hunter2" not in staff.latest[kiosk.app.topics.config_reported].decode()
    assert kiosk.restarts == 0 and kiosk.app.config.counter.reply_timeout_s == 5.0
    folder = overlay.folder_of(kiosk.config)
    assert json.loads((folder / "good.json").read_text())["version"] == 1
    assert not (folder / "trial.json").exists()


def test_the_retained_config_is_not_applied_twice(kiosk_config, staff, issuer):
    kiosk = RunningKiosk(kiosk_config).start()
    try:
        reported(staff, kiosk)
        push(staff, kiosk, issuer, 1, {"counter": {"reply_timeout_s": 5.0}})
        reported(staff, kiosk, lambda body: body["version"] == 1)
    finally:
        kiosk.stop()
    staff.latest.clear()
    kiosk = RunningKiosk(kiosk_config).start()  # gets the retained desired config again
    try:
        body = reported(staff, kiosk)
        assert body["version"] == 1 and body["rejected"] is None
        kiosk.wait_online()
        assert kiosk.restarts == 0
    finally:
        kiosk.stop()


@pytest.mark.parametrize(("table", "code", "why"), [
    ({"counter": {"reply_timeout_s": "fast"}}, "invalid", "expected a number"),
    ({"counter": {"no_such_key": 1}}, "invalid", "unknown key"),
    ({"nonsense": {}}, "invalid", "unknown section"),
    ({"kiosk": {"state_dir": "/tmp/elsewhere"}}, "invalid", "local config file"),
    ({"staff": {"trusted_keys": []}}, "invalid", "nobody could manage"),
])
def test_an_invalid_config_is_refused_and_nothing_changes(kiosk, staff, issuer, table,
                                                           code, why):
    reported(staff, kiosk)
    cmd_id = push(staff, kiosk, issuer, 1, table)
    body = reported(staff, kiosk, lambda body: (body["rejected"] or {}).get("cmd_id") == cmd_id)
    assert body["rejected"]["reason"].startswith(f"{code}: ") and why in body["rejected"]["reason"]
    assert body["version"] == 0 and kiosk.restarts == 0
    assert kiosk.app.config == overlay.startup(kiosk.config).config == kiosk.config


def test_an_older_or_equal_version_is_refused(kiosk, staff, issuer):
    reported(staff, kiosk)
    push(staff, kiosk, issuer, 2, {"counter": {"reply_timeout_s": 5.0}})
    reported(staff, kiosk, lambda body: body["version"] == 2)
    for version in (2, 1):
        cmd_id = push(staff, kiosk, issuer, version, {"counter": {"reply_timeout_s": 9.0}})
        body = reported(staff, kiosk,
                        lambda body, c=cmd_id: (body["rejected"] or {}).get("cmd_id") == c)
        assert body["rejected"]["reason"].startswith("stale-version: ")
        assert body["version"] == 2 and kiosk.app.config.counter.reply_timeout_s == 5.0


def test_an_unsigned_config_is_refused(kiosk, staff, issuer):
    reported(staff, kiosk)
    _, payload = issuer.config(target_for(kiosk.config.kiosk.site, kiosk.app.device_id), 1,
                               {"counter": {"reply_timeout_s": 5.0}})
    envelope = json.loads(payload)
    envelope["body"]["args"]["config"]["counter"]["reply_timeout_s"] = 60.0  # tampered
    staff.send(kiosk.app.topics.config_desired, json.dumps(envelope).encode(), retain=True)
    body = reported(staff, kiosk, lambda body: body["rejected"] is not None)
    assert body["rejected"]["reason"].startswith("bad-signature: ")
    assert body["version"] == 0 and kiosk.restarts == 0


def test_a_kiosk_that_died_while_trying_a_config_starts_with_the_good_one(kiosk_config):
    folder = overlay.folder_of(kiosk_config)
    overlay.write_trial(folder, overlay.Applied(4, "c4", {"counter": {"reply_timeout_s": 9.0}}))
    (folder / "trial.started").touch()  # a start used it and never reported success
    start = overlay.startup(kiosk_config)
    assert start.config == kiosk_config and not start.trial
    assert overlay.rejection(folder) == {
        "version": 4, "cmd_id": "c4", "reason": "rolled back: the kiosk stopped while trying it"}


def test_changes_accumulate_over_the_config_in_force(kiosk, staff, issuer):
    reported(staff, kiosk)
    push(staff, kiosk, issuer, 1, {"counter": {"reply_timeout_s": 5.0}})
    reported(staff, kiosk, lambda body: body["version"] == 1)
    push(staff, kiosk, issuer, 2, {"counter": {"result_screen_s": 3.0}})
    body = reported(staff, kiosk, lambda body: body["version"] == 2)
    assert body["config"]["counter"]["reply_timeout_s"] == 5.0
    assert kiosk.app.config.counter.result_screen_s == 3.0


def test_counters_and_uptime_survive_a_config_that_rebuilds_the_kiosk(kiosk, staff, issuer):
    reported(staff, kiosk)
    kiosk.show_card("LOY-SURVIVE1")
    wait_for(lambda: kiosk.app.health().checkins == 1, 20, "the check-in counted")
    before = kiosk.app.health()
    push(staff, kiosk, issuer, 1, {"camera": {"fps": 10.0}})  # the devices open together
    reported(staff, kiosk, lambda body: body["version"] == 1)
    after = kiosk.wait_restarted().health()
    assert kiosk.app.config.camera.fps == 10.0
    assert after.scans == 1 and after.checkins == before.checkins
    assert after.connects == before.connects + 1 and after.uptime_s >= before.uptime_s


def test_a_config_equal_to_the_one_in_force_restarts_nothing(kiosk, staff, issuer):
    reported(staff, kiosk)
    in_force = kiosk.app.config.counter.reply_timeout_s
    cmd_id = push(staff, kiosk, issuer, 1, {"counter": {"reply_timeout_s": in_force}})
    body = reported(staff, kiosk, lambda body: (body["rejected"] or {}).get("cmd_id") == cmd_id)
    assert body["rejected"]["reason"].startswith("unchanged: ") and body["version"] == 0
    assert kiosk.restarts == 0
