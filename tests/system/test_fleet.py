"""What staff see of the fleet (kiosk.staff.fleet), from retained messages on a real broker
that stand-in kiosks left there."""

from __future__ import annotations

import pytest

from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import target_for
from kiosk.staff import fleet
from kiosk.testing.harness import wait_for

HEALTH = protocol.Health(12.0, "ready", [], 4, 30.0, 9, 8, 0, 0, 8, 0, 0.0, 1, 0, 0, 0, 0, 0, 0,
                         None)


def _topics(device_id: str, site: str = "shop-1") -> protocol.Topics:
    return protocol.Topics("loyalty", site, device_id)


@pytest.fixture
def leave(intruder):
    """Leave a retained message on the broker, as a kiosk does."""
    def publish(topic: str, payload: bytes) -> None:
        intruder.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    return publish


def _heard(staff, *device_ids: str) -> list[fleet.Kiosk]:
    return wait_for(lambda: (kiosks := fleet.survey(staff))
                    and {k.device_id for k in kiosks} >= set(device_ids) and kiosks,
                    what=f"retained messages of {device_ids}")


def test_the_survey_summarises_each_kiosk_from_its_retained_messages(staff, leave, issuer):
    a, b, c, d = _topics("kiosk-a"), _topics("kiosk-b"), _topics("kiosk-c", "shop-2"), \
        _topics("kiosk-d")
    leave(a.status, b"online")
    leave(a.state, protocol.encode_state("ready", "", "1.2.3"))
    leave(a.config_reported, protocol.encode_reported(3, "c3", {}, None))
    leave(a.health, protocol.encode_health(HEALTH, 1_795_388_285.5))
    leave(b.status, b"offline")
    leave(b.state, b"not json")  # unreadable: shown as unknown, not a crash
    leave(c.enroll, protocol.encode_enroll_request("kiosk-c", "shop-2", "1.2.3"))
    _, desired = issuer.config(target_for("shop-1", "kiosk-d"), 1, {})
    leave(d.config_desired, desired)  # staff's own message: kiosk-d was never heard from
    kiosks = _heard(staff, "kiosk-a", "kiosk-b", "kiosk-c")
    assert kiosks == [
        fleet.Kiosk("shop-1", "kiosk-a", "online", "1.2.3", "ready", 3, 4, 1_795_388_285.5,
                    False),
        fleet.Kiosk("shop-1", "kiosk-b", "offline", "", "", None, None, None, False),
        fleet.Kiosk("shop-2", "kiosk-c", "?", "", "", None, None, None, True),
    ]
    shown = fleet.details(staff, kiosks[0])
    assert shown["state"]["state"] == "ready" and shown["tele/health"]["outbox_depth"] == 4
    assert fleet.details(staff, kiosks[1])["state"] == "not json"


def test_the_next_version_is_above_what_the_kiosk_reports_and_staff_last_asked(staff, leave,
                                                                                 issuer):
    a = _topics("kiosk-a")
    assert fleet.next_version(staff, a) == 1
    leave(a.config_reported, protocol.encode_reported(3, "c3", {}, None))
    wait_for(lambda: a.config_reported in staff.latest, what="the reported config")
    assert fleet.next_version(staff, a) == 4
    _, desired = issuer.config(target_for("shop-1", "kiosk-a"), 7, {})
    leave(a.config_desired, desired)
    wait_for(lambda: a.config_desired in staff.latest, what="the desired config")
    assert fleet.next_version(staff, a) == 8
    leave(a.config_desired, b'{"v":1,"body":{"version":99}}')  # not a sealed order
    wait_for(lambda: staff.latest.get(a.config_desired, b"").startswith(b'{"v":1,"body":{"ver'),
             what="the forged desired config")
    assert fleet.next_version(staff, a) == 4


def test_a_config_nobody_answers_is_left_retained_and_reported_as_no_answer(staff, leave,
                                                                           issuer):
    a = _topics("kiosk-a")
    leave(a.status, b"online")
    leave(a.config_reported, protocol.encode_reported(2, "c2", {}, None))
    [kiosk] = _heard(staff, "kiosk-a")
    wait_for(lambda: a.config_reported in staff.latest, what="the reported config")
    outcome = fleet.apply_config(staff, issuer, [kiosk], {"counter": {"cooldown_s": 5.0}}, 0.5)
    assert outcome == {"kiosk-a": {"outcome": "no answer", "version": 3, "reason": ""}}
    wait_for(lambda: a.config_desired in staff.latest, what="the desired config retained")
