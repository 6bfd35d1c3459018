"""Home Assistant MQTT discovery: the kiosk as a device with its entities, or removed again.

Home Assistant's MQTT integration makes an entity from each retained JSON config
it finds under ``<discovery prefix>/<component>/<node id>/<object id>/config``
(schema: https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery and the
sensor.mqtt / binary_sensor.mqtt pages; checked against home-assistant/core
``homeassistant/components/mqtt/schemas.py`` and ``config.py``: a device needs
``identifiers``, a sensor a ``state_topic``). The entities only *point at* topics
the kiosk publishes anyway (its retained ``status`` and ``state``, its
``tele/health`` report), so nothing is sent twice and the kiosk's own protocol
does not change. The payloads here are Home Assistant's format, kept in this one
module as the kiosk's own format is kept in :mod:`kiosk.mqtt.protocol`, where
the topics are.

On: the configs are published (retained, QoS 1) after every connect and again
whenever Home Assistant announces ``online`` on ``<prefix>/status`` (it forgets
nothing retained, but a Home Assistant started with a fresh broker does). Off:
the kiosk subscribes to its own config topics and empties each one it finds
(an empty retained payload is Home Assistant's "remove this entity"), so
switching discovery off leaves nothing behind, with no record kept on the kiosk.
Everything here runs on paho's thread: it only publishes bytes made up front.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiosk import __version__
from kiosk.mqtt import protocol
from kiosk.mqtt.protocol import ANY, Topics

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bool], object]
"""``publish(topic, payload, retain)`` at QoS 1; must not block."""


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity of the kiosk: where its value comes from and how to read it."""

    component: str
    object_id: str
    name: str
    source: str
    """``state`` or ``health``: which of the kiosk's topics holds the value."""
    value_template: str
    extra: tuple[tuple[str, Any], ...] = ()


HEALTH_SOURCE, STATE_SOURCE = "health", "state"
ENTITIES = (
    Entity("sensor", "state", "State", STATE_SOURCE, "{{ value_json.state }}",
           (("json_attributes_template",
             "{{ {'reason': value_json.reason, 'firmware': value_json.firmware} | tojson }}"),
            ("icon", "mdi:store-check"))),
    Entity("sensor", "outbox_depth", "Outbox", HEALTH_SOURCE, "{{ value_json.outbox_depth }}",
           (("state_class", "measurement"), ("unit_of_measurement", "check-ins"),
            ("entity_category", "diagnostic"), ("icon", "mdi:tray-full"))),
    Entity("sensor", "checkins_today", "Check-ins today", HEALTH_SOURCE,
           "{{ value_json.checkins_today }}",
           (("state_class", "total_increasing"), ("unit_of_measurement", "check-ins"),
            ("icon", "mdi:account-check"))),
    Entity("sensor", "last_scan", "Last scan", HEALTH_SOURCE,
           "{{ as_datetime(value_json.last_scan_at) if value_json.last_scan_at else None }}",
           (("device_class", "timestamp"),)),
    Entity("binary_sensor", "problem", "Problem", HEALTH_SOURCE,
           "{{ 'ON' if value_json.problems else 'OFF' }}",
           (("device_class", "problem"), ("entity_category", "diagnostic"),
            ("json_attributes_template", "{{ {'problems': value_json.problems} | tojson }}"))),
)


def discovery_configs(topics: Topics, discovery_prefix: str,
                      health_interval_s: float) -> dict[str, bytes]:
    """Every entity's config topic and retained payload, for the kiosk of ``topics``.

    Health figures expire after three missed reports (Home Assistant then shows them as
    unavailable rather than a stale number); with no health reports
    (``telemetry.interval_s = 0``) there are none to show, and only the state is offered.
    """
    node = topics.device_id
    if not protocol.HASS_NODE_ID.match(node):
        raise ValueError(f"Home Assistant discovery needs a device id of letters, digits, '_' "
                         f"and '-' only, not {node!r}")
    sources = {STATE_SOURCE: topics.state, HEALTH_SOURCE: topics.health}
    device = {"identifiers": [f"loyalty-kiosk-{node}"], "name": node,
              "manufacturer": "loyalty-kiosk", "model": "Loyalty check-in kiosk",
              "sw_version": __version__, "suggested_area": topics.site}
    configs: dict[str, bytes] = {}
    for entity in ENTITIES:
        if entity.source == HEALTH_SOURCE and not health_interval_s:
            continue
        body: dict[str, Any] = {
            "name": entity.name, "unique_id": f"{node}_{entity.object_id}",
            "state_topic": sources[entity.source], "value_template": entity.value_template,
            "availability_topic": topics.status,
            "payload_available": protocol.ONLINE.decode(),
            "payload_not_available": protocol.OFFLINE.decode(),
            "device": device, "origin": {"name": "loyalty-kiosk", "sw_version": __version__},
            **dict(entity.extra),
        }
        if "json_attributes_template" in body:
            body["json_attributes_topic"] = sources[entity.source]
        if entity.source == HEALTH_SOURCE:
            body["expire_after"] = round(3 * health_interval_s)
        topic = protocol.hass_config_topic(discovery_prefix, entity.component, node,
                                           entity.object_id)
        configs[topic] = json.dumps(body, separators=(",", ":")).encode()
    return configs


class Discovery:
    """The kiosk's side of discovery on its MQTT link: what to subscribe to after each
    connect, what to publish then, and what to do with the messages that come of it."""

    def __init__(self, topics: Topics, enabled: bool, discovery_prefix: str,
                 health_interval_s: float) -> None:
        self.enabled = enabled
        self._prefix = discovery_prefix
        self._birth = protocol.hass_status_topic(discovery_prefix)
        # off: every config topic this kiosk could have published, whatever the component
        self._own = protocol.hass_config_topic(discovery_prefix, ANY, topics.device_id, ANY)
        self.configs = (discovery_configs(topics, discovery_prefix, health_interval_s)
                        if enabled else {})

    @property
    def subscriptions(self) -> list[str]:
        """On: Home Assistant's status (its restarts); off: the kiosk's own configs, to
        empty any that are still retained."""
        return [self._birth] if self.enabled else [self._own]

    def wants(self, topic: str) -> bool:
        """True for a message this part handles (and nothing else does)."""
        if self.enabled:
            return topic == self._birth
        parts = topic.split("/")
        own = self._own.split("/")
        return len(parts) == len(own) and all(o in (ANY, p) for o, p in zip(own, parts,
                                                                           strict=True))

    def connected(self, publish: Publish) -> None:
        """After each connect: publish every config (on)."""
        for topic, payload in self.configs.items():
            publish(topic, payload, True)
        if self.configs:
            log.info("Home Assistant discovery: %d entities published under %s/",
                     len(self.configs), self._prefix)

    def message(self, topic: str, payload: bytes, publish: Publish) -> None:
        """Home Assistant came online: publish again (on). A config of ours still retained
        while discovery is off: remove it."""
        if self.enabled:
            if payload == protocol.ONLINE:
                self.connected(publish)
        elif payload:
            publish(topic, b"", True)
            log.info("Home Assistant discovery is off: removed %s", topic)
