"""Home Assistant's documented MQTT discovery schema, as far as the kiosk's entities use it.

Transcribed from Home Assistant's docs (integrations/mqtt "MQTT Discovery",
sensor.mqtt, binary_sensor.mqtt) and checked against home-assistant/core:
``homeassistant/components/mqtt/schemas.py`` (commit c6ca7f5: availability,
device, origin, common entity keys; a device needs ``identifiers`` or
``connections``; an origin needs ``name``), ``config.py`` (commit 459c79f: a
read-only entity needs ``state_topic``; ``qos``, ``encoding``, ``value_template``),
and the sensor and binary sensor platforms' own keys. Home Assistant refuses a
config with a key it does not know, so an unknown key here is an error too.
"""

from __future__ import annotations

import re
from typing import Any

DISCOVERY_TOPIC = re.compile(
    r"^(?P<prefix>[^/#+]+)/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config$")
"""Home Assistant's discovery topic: ``<prefix>/<component>/[<node_id>/]<object_id>/config``."""

AVAILABILITY = {"availability_topic", "availability_template", "payload_available",
                "payload_not_available", "availability_mode", "availability"}
COMMON = {"device", "origin", "enabled_by_default", "entity_category", "icon",
          "json_attributes_topic", "json_attributes_template", "object_id", "unique_id", "name",
          "default_entity_id", "entity_picture"}
READ_ONLY = {"state_topic", "value_template", "qos", "encoding"}
PLATFORM = {
    "sensor": {"device_class", "expire_after", "force_update", "last_reset_value_template",
               "options", "state_class", "suggested_display_precision", "unit_of_measurement"},
    "binary_sensor": {"device_class", "expire_after", "force_update", "off_delay",
                      "payload_off", "payload_on"},
}
DEVICE = {"identifiers", "connections", "manufacturer", "model", "model_id", "name",
          "hw_version", "serial_number", "sw_version", "via_device", "suggested_area",
          "configuration_url"}
ORIGIN = {"name", "sw_version", "support_url"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
DEVICE_CLASSES = {
    "sensor": {"timestamp", "enum", "duration", "temperature", "data_size"},  # those that fit
    "binary_sensor": {"problem", "connectivity", "running"},
}
TOPIC_KEYS = {"state_topic", "availability_topic", "json_attributes_topic"}
TEMPLATE_KEYS = {"value_template", "json_attributes_template", "availability_template"}


def problems(topic: str, config: dict[str, Any]) -> list[str]:
    """What Home Assistant would refuse in this discovery message (empty: it takes it)."""
    found: list[str] = []
    match = DISCOVERY_TOPIC.match(topic)
    if match is None:
        return [f"{topic}: not a discovery topic"]
    component = match["component"]
    if component not in PLATFORM:
        return [f"{topic}: component {component} is not one the kiosk uses"]
    allowed = AVAILABILITY | COMMON | READ_ONLY | PLATFORM[component]
    found += [f"unknown key {key!r}" for key in config if key not in allowed]
    if not isinstance(config.get("state_topic"), str):
        found.append("state_topic is required (a string)")
    for key in TOPIC_KEYS & config.keys():
        if not isinstance(config[key], str) or not config[key] or "#" in config[key] \
                or "+" in config[key]:
            found.append(f"{key}: expected a topic without wildcards")
    for key in TEMPLATE_KEYS & config.keys():
        if not isinstance(config[key], str) or "{{" not in config[key]:
            found.append(f"{key}: expected a template")
    if "availability" in config and "availability_topic" in config:
        found.append("availability and availability_topic are exclusive")
    if "unique_id" not in config:
        found.append("unique_id is needed for the device registry")
    device = config.get("device")
    if not isinstance(device, dict):
        found.append("device: expected a mapping")
    else:
        found += [f"device: unknown key {key!r}" for key in device if key not in DEVICE]
        if not (device.get("identifiers") or device.get("connections")):
            found.append("device: needs identifiers or connections")
        if not all(isinstance(i, str) for i in device.get("identifiers", [])):
            found.append("device.identifiers: expected strings")
    origin = config.get("origin")
    if origin is not None:
        found += [f"origin: unknown key {key!r}" for key in origin if key not in ORIGIN]
        if not isinstance(origin.get("name"), str):
            found.append("origin: name is required")
    if config.get("entity_category", "diagnostic") not in ENTITY_CATEGORIES:
        found.append("entity_category: expected config or diagnostic")
    if config.get("state_class", "measurement") not in STATE_CLASSES:
        found.append("state_class: not a state class")
    if "device_class" in config and config["device_class"] not in DEVICE_CLASSES[component]:
        found.append(f"device_class: {config['device_class']!r} is not a {component} class")
    if config.get("device_class") == "timestamp" and {"state_class", "unit_of_measurement"} \
            & config.keys():
        found.append("a timestamp sensor has neither state_class nor unit_of_measurement")
    expire = config.get("expire_after")
    if expire is not None and not (isinstance(expire, int) and expire > 0):
        found.append("expire_after: expected a positive integer")
    if config.get("icon", "mdi:x").split(":")[0] != "mdi":
        found.append("icon: expected mdi:<name>")
    return [f"{topic}: {problem}" for problem in found]
