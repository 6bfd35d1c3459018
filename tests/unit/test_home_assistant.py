"""Home Assistant discovery configs, checked against Home Assistant's documented schema
(tests/hass_schema.py) without a broker; tests/system/test_broker_wall.py runs them for real."""

from __future__ import annotations

import json

import pytest

from kiosk.mqtt import protocol
from kiosk.mqtt.hass import Discovery, discovery_configs
from tests import hass_schema

TOPICS = protocol.Topics("loyalty", "shop-1", "pi-7")


def test_every_config_is_one_home_assistant_takes():
    configs = discovery_configs(TOPICS, "homeassistant", 60.0)
    assert sorted(configs) == [
        "homeassistant/binary_sensor/pi-7/problem/config",
        "homeassistant/sensor/pi-7/checkins_today/config",
        "homeassistant/sensor/pi-7/last_scan/config",
        "homeassistant/sensor/pi-7/outbox_depth/config",
        "homeassistant/sensor/pi-7/state/config",
    ]
    for topic, payload in configs.items():
        body = json.loads(payload)
        assert hass_schema.problems(topic, body) == []
        assert body["expire_after" if "health" in body["state_topic"] else "unique_id"]


def test_the_schema_check_can_fail():
    good = json.loads(discovery_configs(TOPICS, "homeassistant", 60.0)[
        "homeassistant/sensor/pi-7/last_scan/config"])
    assert hass_schema.problems("homeassistant/sensor/pi.7/x/config", good)  # a dot in the node
    assert hass_schema.problems("homeassistant/sensor/pi-7/x/config",
                                {**good, "unit_of_measurement": "s", "colour": 1})
    assert hass_schema.problems("homeassistant/sensor/pi-7/x/config",
                                {**good, "device": {"name": "no identifiers"}})


def test_without_health_reports_only_the_state_is_offered():
    assert list(discovery_configs(TOPICS, "homeassistant", 0)) == [
        "homeassistant/sensor/pi-7/state/config"]


def test_a_device_id_home_assistant_cannot_take_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="letters, digits, '_' and '-'"):
        Discovery(protocol.Topics("loyalty", "shop", "pi.7"), True, "homeassistant", 60.0)
    Discovery(protocol.Topics("loyalty", "shop", "pi.7"), False, "homeassistant", 60.0)  # off


def test_switched_off_it_removes_only_its_own_retained_configs():
    off = Discovery(TOPICS, False, "homeassistant", 60.0)
    sent: list[tuple[str, bytes, bool]] = []
    own = "homeassistant/sensor/pi-7/outbox_depth/config"
    assert off.subscriptions == ["homeassistant/+/pi-7/+/config"]
    assert off.wants(own) and not off.wants("homeassistant/sensor/pi-8/outbox_depth/config")
    off.message(own, b'{"name":"Outbox"}', lambda *m: sent.append(m))
    off.message(own, b"", lambda *m: sent.append(m))  # already removed: nothing to do
    assert sent == [(own, b"", True)]
