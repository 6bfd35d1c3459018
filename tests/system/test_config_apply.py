"""A new config is applied as a difference: only the parts whose settings changed restart.

Black-box against a running kiosk, a real mosquitto and simulated hardware. What is watched
from outside: the kiosk's ``connects`` health counter (a restarted link connects again), a
customer's scan half-way down the serial line (a restarted reader closes its line and the
half is lost), the panel's contrast and pixels, and the health counters and uptime.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from kiosk.config import Config
from kiosk.counter.screens import Idle
from kiosk.provisioning import overlay
from kiosk.testing.broker import free_port
from kiosk.testing.harness import RunningKiosk, same_pixels, wait_for
from kiosk.testing.staff import reported, target_of, trusting
from kiosk.trust.signing import Signer
from kiosk.ui.render import render


@pytest.fixture
def kiosk_config(kiosk_config: Config, staff_key: Signer) -> Config:
    return trusting(kiosk_config, staff_key, rollback_after_s=3.0)


@pytest.fixture
def half_scan(kiosk: RunningKiosk) -> Iterator[int]:
    """The serial line with a customer's code half sent (``LOY-HALF``): the other half comes
    later on the same line, as a slow scanner sends it."""
    line = os.open(kiosk.config.serial.sim_link, os.O_WRONLY | os.O_NOCTTY)
    try:
        kiosk.wait_online()
        os.write(line, b"LOY-HALF")
        yield line
    finally:
        os.close(line)


def push(staff, kiosk: RunningKiosk, issuer, version: int, table: dict) -> str:
    order, payload = issuer.config(target_of(kiosk), version, table)
    staff.send(kiosk.app.topics.config_desired, payload, retain=True)
    return order.cmd_id


def finish_scan(kiosk: RunningKiosk, line: int, checkins: int) -> None:
    """The second half of the scan arrives: the whole code is one check-in."""
    os.write(line, b"DONE1\r")
    wait_for(lambda: kiosk.app.health().checkins == checkins, 10, "the half-sent scan")


def good_version(kiosk: RunningKiosk) -> int | None:
    good = overlay.folder_of(kiosk.config) / "good.json"
    return json.loads(good.read_text())["version"] if good.exists() else None


def test_a_screen_setting_restarts_nothing_and_the_screen_takes_it(kiosk, staff, issuer,
                                                                   half_scan):
    reported(staff, kiosk)
    panel = kiosk.app.sim.display
    levels: list[int] = []
    real = panel.contrast
    panel.contrast = lambda level: (levels.append(level), real(level))
    kiosk.show_card("LOY-BEFORE1")
    wait_for(lambda: kiosk.app.health().checkins == 1, 20, "the first check-in")
    before = kiosk.app.health()
    push(staff, kiosk, issuer, 1, {"ui": {"store_name": "Corner Shop"},
                                   "display": {"contrast": 90}})
    body = reported(staff, kiosk, lambda body: body["version"] == 1)
    assert body["rejected"] is None and body["config"]["ui"]["store_name"] == "Corner Shop"
    assert good_version(kiosk) == 1  # nothing to prove by reconnecting: in force at once
    wait_for(lambda: 90 in levels, 10, "the panel's new contrast")
    expected = render(Idle(online=True), kiosk.app.presenter.layout, store="Corner Shop")
    wait_for(lambda: kiosk.app.screen == Idle(online=True) and panel.frame is not None
             and same_pixels(panel.frame, expected), 10, "the shop's new name on the OLED")
    finish_scan(kiosk, half_scan, 2)
    after = kiosk.app.health()
    assert kiosk.restarts == 0 and after.connects == before.connects == 1
    assert after.scans == before.scans + 1 and after.uptime_s >= before.uptime_s


def test_a_link_setting_reconnects_the_link_alone(kiosk, staff, issuer, backend, half_scan):
    reported(staff, kiosk)
    before = kiosk.app.health()
    push(staff, kiosk, issuer, 1, {"mqtt": {"host": "localhost"}})
    body = reported(staff, kiosk, lambda body: body["version"] == 1)
    assert body["rejected"] is None and body["config"]["mqtt"]["host"] == "localhost"
    wait_for(lambda: good_version(kiosk) == 1, 10, "the new config promoted once connected")
    assert kiosk.app.health().connects == before.connects + 1
    finish_scan(kiosk, half_scan, before.checkins + 1)
    kiosk.wait_credited(1)  # over the new connection
    after = kiosk.app.health()
    assert kiosk.restarts == 0 and after.uptime_s >= before.uptime_s


def test_a_link_setting_that_cannot_connect_rolls_back_the_link_alone(kiosk, staff, issuer,
                                                                      mosquitto, half_scan):
    reported(staff, kiosk)
    before = kiosk.app.health()
    cmd_id = push(staff, kiosk, issuer, 1, {"mqtt": {"port": free_port()}})
    body = reported(staff, kiosk,
                    lambda body: (body["rejected"] or {}).get("cmd_id") == cmd_id)
    assert body["rejected"]["reason"] == "rolled back: no broker connection within 3 s"
    assert body["version"] == 0 and body["config"]["mqtt"]["port"] == mosquitto.port
    assert kiosk.app.config.mqtt.port == mosquitto.port
    assert not (overlay.folder_of(kiosk.config) / "trial.json").exists()
    wait_for(lambda: kiosk.app.health().connects == before.connects + 1, 10,
             "the link back on the good broker")
    finish_scan(kiosk, half_scan, before.checkins + 1)
    assert kiosk.restarts == 0


def test_an_outbox_limit_is_taken_live(kiosk, staff, issuer):
    reported(staff, kiosk)
    before = kiosk.app.health()
    push(staff, kiosk, issuer, 1, {"outbox": {"max_rows": 1}})
    reported(staff, kiosk, lambda body: body["version"] == 1)
    kiosk.type_code("LOY-LIVE001")  # no backend here: it stays in the outbox
    wait_for(lambda: kiosk.app.health().checkins == 1, 10, "a check-in")
    kiosk.type_code("LOY-LIVE002")
    wait_for(lambda: kiosk.app.health().visits_refused == 1, 10, "the outbox full at one row")
    assert kiosk.restarts == 0 and kiosk.app.health().connects == before.connects


def test_a_kiosk_stopped_while_its_new_link_tries_to_connect_starts_with_the_good_config(
        kiosk, staff, issuer):
    reported(staff, kiosk)
    cmd_id = push(staff, kiosk, issuer, 1, {"mqtt": {"port": free_port()}})
    folder = overlay.folder_of(kiosk.config)
    wait_for(lambda: (folder / "trial.started").exists(), 10, "the trial under way")
    kiosk.stop()  # a power cut, before the new link connected
    start = overlay.startup(kiosk.config)
    assert start.config == kiosk.config and not start.trial
    assert overlay.rejection(folder) == {
        "version": 1, "cmd_id": cmd_id, "reason": "rolled back: the kiosk stopped while trying it"}
