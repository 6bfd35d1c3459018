"""Signed staff orders, against a real mosquitto and a running simulated kiosk.

Every rejection case of the envelope is here: unsigned, tampered, unknown key,
misrouted, wrong target, expired, replayed (also after a restart of the kiosk),
lower sequence, retained. Each is answered on ``cmd/<name>/result`` with the
reason, and nothing changes.
"""

from __future__ import annotations

import json

import pytest

from kiosk.config import Config
from kiosk.counter.screens import StaffInfo
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import target_for
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import Issuer
from kiosk.testing.harness import RunningKiosk, wait_for
from kiosk.testing.staff import target_of, trusting, wait_listening
from kiosk.trust.signing import Signer


@pytest.fixture
def kiosk_config(kiosk_config: Config, staff_key: Signer) -> Config:
    return trusting(kiosk_config, staff_key)


def send(staff: StaffClient, kiosk: RunningKiosk, name: str, payload: bytes,
         cmd_id: str, topic_name: str | None = None) -> dict:
    """Publish on the kiosk's ``cmd/<topic_name or name>`` and return the one result."""
    staff.send(kiosk.app.topics.command(topic_name or name), payload)
    results = staff.wait(lambda: staff.results_for(cmd_id), 10)
    assert results, f"no result for {cmd_id}"
    topic, body = results[0]
    assert topic == kiosk.app.topics.command_result(topic_name or name)
    return body


def refused(body: dict, code: str) -> None:
    assert body["status"] == "error"
    assert body["error"].startswith(f"{code}: "), body["error"]


def test_a_signed_ping_is_answered(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "ping")
    body = send(staff, kiosk, "ping", payload, order.cmd_id)
    assert body["status"] == "ok" and body["data"]["pong"] is True
    assert body["cmd_id"] == order.cmd_id


def test_an_unsigned_command_is_refused_and_nothing_happens(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, _ = issuer.command(target_of(kiosk), "restart")
    unsigned = json.dumps({"v": 1, "body": order.__dict__}).encode()
    body = send(staff, kiosk, "restart", unsigned, "")
    refused(body, "malformed")
    assert "sig" in body["error"]
    assert kiosk.restarts == 0 and kiosk.app.restart_requested is None


def test_a_tampered_command_is_refused(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "identify")
    envelope = json.loads(payload)
    envelope["body"]["name"] = "restart"  # the signature covered "identify"
    body = send(staff, kiosk, "restart", json.dumps(envelope).encode(), order.cmd_id)
    refused(body, "bad-signature")
    assert kiosk.restarts == 0 and kiosk.app.hardware.lights.current != "identify"


def test_a_signed_command_moved_to_another_topic_is_refused(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "identify")
    body = send(staff, kiosk, "restart", payload, order.cmd_id, topic_name="restart")
    refused(body, "misrouted")
    assert kiosk.restarts == 0


def test_a_command_signed_by_an_unknown_key_is_refused(kiosk, staff):
    wait_listening(staff, kiosk)
    order, payload = Issuer(Signer.generate()).command(target_of(kiosk), "identify")
    body = send(staff, kiosk, "identify", payload, order.cmd_id)
    refused(body, "unknown-key")
    assert kiosk.app.hardware.lights.current != "identify"


def test_a_command_for_another_kiosk_is_refused(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_for(kiosk.config.kiosk.site, "someone-else"),
                                    "identify")
    body = send(staff, kiosk, "identify", payload, order.cmd_id)
    refused(body, "wrong-target")
    assert kiosk.app.hardware.lights.current != "identify"


def test_an_expired_command_is_refused(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "identify", ttl_s=-60)
    body = send(staff, kiosk, "identify", payload, order.cmd_id)
    refused(body, "expired")
    assert kiosk.app.hardware.lights.current != "identify"


def test_a_replayed_command_is_refused_also_after_a_restart(kiosk_config, staff, issuer):
    kiosk = RunningKiosk(kiosk_config).start()
    try:
        wait_listening(staff, kiosk)
        order, payload = issuer.command(target_of(kiosk), "flush-cache")
        assert send(staff, kiosk, "flush-cache", payload, order.cmd_id)["status"] == "ok"
        staff.results.clear()
        refused(send(staff, kiosk, "flush-cache", payload, order.cmd_id), "replayed")
    finally:
        kiosk.stop()
    staff.results.clear()
    staff.latest.clear()
    kiosk = RunningKiosk(kiosk_config).start()  # a reboot: same state directory
    try:
        wait_listening(staff, kiosk)
        refused(send(staff, kiosk, "flush-cache", payload, order.cmd_id), "replayed")
    finally:
        kiosk.stop()


def test_a_command_with_a_lower_sequence_number_is_refused(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    older, older_payload = issuer.command(target_of(kiosk), "identify")
    newer, newer_payload = issuer.command(target_of(kiosk), "ping")
    assert send(staff, kiosk, "ping", newer_payload, newer.cmd_id)["status"] == "ok"
    body = send(staff, kiosk, "identify", older_payload, older.cmd_id)
    refused(body, "old-sequence")
    assert kiosk.app.hardware.lights.current != "identify"


def test_a_retained_command_is_dropped(kiosk_config, mosquitto, staff, issuer):
    topics = protocol.Topics("loyalty", kiosk_config.kiosk.site, kiosk_config.kiosk.device_id)
    order, payload = issuer.command(target_for(topics.site, topics.device_id), "restart")
    staff.send(topics.command("restart"), payload, retain=True)
    kiosk = RunningKiosk(kiosk_config).start()
    try:
        wait_listening(staff, kiosk)
        wait_for(lambda: kiosk.app.staff.retained_dropped == 1, 10, "the retained command")
        assert kiosk.restarts == 0 and not staff.results_for(order.cmd_id)
    finally:
        kiosk.stop()


def test_site_and_fleet_commands_reach_the_kiosk(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    site = kiosk.config.kiosk.site
    for target, topic in ((target_for(site), protocol.command_topic("loyalty", site,
                                                                   name="ping")),
                          (target_for(), protocol.command_topic("loyalty", name="ping"))):
        order, payload = issuer.command(target, "ping")
        staff.send(topic, payload)
        results = staff.wait(lambda cmd_id=order.cmd_id: staff.results_for(cmd_id), 10)
        assert results and results[0][0] == kiosk.app.topics.command_result("ping")
        assert results[0][1]["status"] == "ok"


def _lit(frame) -> float:
    """The share of the panel's pixels that are on."""
    mono = frame.convert("L").point(lambda value: 255 if value else 0)
    return mono.histogram()[255] / (mono.width * mono.height)


def test_identify_blinks_the_lights_and_shows_the_staff_screen(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "identify")
    assert send(staff, kiosk, "identify", payload, order.cmd_id)["status"] == "ok"
    assert kiosk.app.hardware.lights.current == "identify"
    screen = kiosk.app.screen
    assert isinstance(screen, StaffInfo) and screen.identify
    assert screen.device_id == kiosk.app.device_id and screen.broker == "connected"
    assert screen.ip_address == "127.0.0.1"  # the way to the test broker


def test_set_brightness_reaches_the_panel(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    panel = kiosk.app.hardware.display  # luma's dummy device: record what it is told
    levels: list[int] = []
    real = panel.contrast
    panel.contrast = lambda level: (levels.append(level), real(level))
    order, payload = issuer.command(target_of(kiosk), "set-brightness", {"level": 40})
    assert send(staff, kiosk, "set-brightness", payload, order.cmd_id)["status"] == "ok"
    wait_for(lambda: levels == [40], 5, "the panel's contrast")


def test_display_test_lights_the_panel_then_gives_it_back(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    panel = kiosk.app.hardware.display
    order, payload = issuer.command(target_of(kiosk), "display-test", {"seconds": 1})
    body = send(staff, kiosk, "display-test", payload, order.cmd_id)
    assert body["status"] == "ok" and body["data"]["seconds"] == 1
    wait_for(lambda: panel.frame is not None and _lit(panel.frame) > 0.9, 5, "the test pattern")
    wait_for(lambda: _lit(panel.frame) < 0.5, 5, "the customer's screen back")


def test_status_answers_with_the_health_report(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "status")
    body = send(staff, kiosk, "status", payload, order.cmd_id)
    assert body["status"] == "ok" and body["data"]["config_version"] == 0
    assert body["data"]["outbox_depth"] == 0 and "uptime_s" in body["data"]


def test_bad_arguments_are_an_error_result(kiosk, staff, issuer):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "set-brightness", {"level": 999})
    body = send(staff, kiosk, "set-brightness", payload, order.cmd_id)
    assert body["status"] == "error" and "0 to 255" in body["error"]


def test_restart_command_restarts_the_kiosk_in_process(kiosk, staff, issuer, backend):
    wait_listening(staff, kiosk)
    order, payload = issuer.command(target_of(kiosk), "restart")
    assert send(staff, kiosk, "restart", payload, order.cmd_id)["status"] == "ok"
    kiosk.wait_restarted()
    wait_listening(staff, kiosk)
    kiosk.show_card("LOY-ALICE01")
    kiosk.wait_drained()


def test_flush_cache_forgets_members(kiosk, staff, issuer, backend):
    wait_listening(staff, kiosk)
    kiosk.show_card("LOY-ALICE01")
    wait_for(lambda: kiosk.app.cache.load(), 10, "the member to be cached")
    order, payload = issuer.command(target_of(kiosk), "flush-cache")
    body = send(staff, kiosk, "flush-cache", payload, order.cmd_id)
    assert body["data"] == {"forgotten": 1}
    assert kiosk.app.cache.load() == {}

