"""Which config keys staff may set over MQTT, and why every other key belongs to the shop.

A signed desired config is trusted to tune a kiosk, not to re-plumb it. Every key of
:class:`kiosk.config.Config` is in exactly one of the two tables below, each with its
reason (a unit test fails when a new key is added to neither). What is remote is the
exception: a key is local unless it is listed in :data:`REMOTE`, so a key added later
is safe until someone decides otherwise.

Local, whatever staff sign, are:

- every **path** (state directory, spool, simulated device files, metrics folder,
  TLS files, the clock marker): a path written or cleaned by one part and pointed at
  the state directory or at another part's files destroys what is there (a camera
  spool aimed at the state directory deleted ``kiosk.db``);
- the kiosk's **identity** (device id, site): its topics, its broker ACL and its
  sequence numbers hang on it;
- the **hardware** the shop wired (which backend, pins, buses, panel, ports): a wrong
  pin drives a GPIO something else is soldered to, and nobody at the office can see it;
- the **security posture** of the link (TLS on or off): turning it off remotely would
  send the broker password in clear.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

_PATH = "a path: aimed at the state directory or another part's files it destroys them"
_WIRED = "hardware the shop fitted and wired; nobody remote can see it"
_TUNING = "tuning within checked bounds; a bad value is rolled back like any config"

REMOTE: dict[tuple[str, str], str] = {
    ("kiosk", "log_level"): "how much the kiosk logs",
    ("members", "pattern"): "the chain's member code format",
    ("members", "card_keys"): "the chain rotates its card-issuer keys",
    ("members", "tag_ids"): "the chain's card policy",
    ("counter", "reply_timeout_s"): _TUNING,
    ("counter", "result_screen_s"): _TUNING,
    ("counter", "cooldown_s"): _TUNING,
    ("mqtt", "host"): "staff move kiosks between brokers; a trial that cannot connect "
                      "is rolled back",
    ("mqtt", "port"): "as host",
    ("mqtt", "protocol"): "as host",
    ("mqtt", "topic_prefix"): "as host",
    ("mqtt", "keepalive_s"): _TUNING,
    ("mqtt", "username"): "credential rotation; rolled back if refused",
    ("mqtt", "password"): "credential rotation; never reported back (secret)",
    ("mqtt", "reconnect_min_s"): _TUNING,
    ("mqtt", "reconnect_max_s"): _TUNING,
    ("mqtt", "connect_timeout_s"): _TUNING,
    ("mqtt", "session_expiry_s"): _TUNING,
    ("outbox", "max_rows"): _TUNING,
    ("outbox", "max_mb"): _TUNING,
    ("outbox", "publish_window"): _TUNING,
    ("outbox", "ack_timeout_s"): _TUNING,
    ("outbox", "backend_alarm_s"): _TUNING,
    ("telemetry", "interval_s"): _TUNING,
    ("homeassistant", "discovery"): "an office integration; topics bounded by the ACL",
    ("homeassistant", "discovery_prefix"): "as discovery",
    ("metrics", "interval_s"): _TUNING,
    ("staff", "trusted_keys"): "staff key rotation (never emptied: see Shadow.apply)",
    ("staff", "rollback_after_s"): "a trial still runs under the last good value",
    ("camera", "width"): _TUNING,
    ("camera", "height"): _TUNING,
    ("camera", "fps"): _TUNING,
    ("camera", "idle_fps"): _TUNING,
    ("camera", "idle_after_s"): _TUNING,
    ("camera", "motion_threshold"): _TUNING,
    ("camera", "roi"): _TUNING,
    ("camera", "decoder"): _TUNING,
    ("camera", "try_downscale"): _TUNING,
    ("camera", "cooldown_s"): _TUNING,
    ("camera", "hold_s"): _TUNING,
    ("serial", "cooldown_s"): _TUNING,
    ("keyboard", "cooldown_s"): _TUNING,
    ("nfc", "cooldown_s"): _TUNING,
    ("display", "contrast"): _TUNING,
    ("ui", "locale"): "the chain's language",
    ("ui", "store_name"): "the chain names its shops",
    ("ui", "dim_after_s"): _TUNING,
    ("ui", "dim_contrast"): _TUNING,
    ("ui", "pixel_shift_s"): _TUNING,
}
"""Keys a signed desired config may change, and why that is safe."""

_HARDWARE_SECTIONS = ("camera", "serial", "display", "lights", "keyboard", "nfc")
_PATHS = {("kiosk", "state_dir"), ("metrics", "textfile_dir"), ("mqtt", "ca_file"),
          ("mqtt", "cert_file"), ("mqtt", "key_file"), ("staff", "clock_synced_file"),
          ("camera", "spool_dir"), ("serial", "sim_link"), ("serial", "port"),
          ("display", "sim_png"), ("lights", "sim_state"), ("keyboard", "device"),
          ("nfc", "port")}


def _local_reason(section: str, key: str) -> str:
    if (section, key) in _PATHS:
        return _PATH
    if (section, key) in (("kiosk", "device_id"), ("kiosk", "site")):
        return "the kiosk's identity: its topics, broker ACL and sequence numbers hang on it"
    if (section, key) == ("mqtt", "tls"):
        return "turning TLS off remotely would send the broker password in clear"
    if section in _HARDWARE_SECTIONS:
        return _WIRED
    if section == "update":
        return ("software updates: a remote config could trust its own release key (the "
                "release key's role is apart from the command keys) or move the updater's files")
    return "not reviewed for remote change: local until it is"


def local_only(config_type: type) -> dict[tuple[str, str], str]:
    """Every key of ``config_type`` (a Config) that only the local file may set, and why."""
    found: dict[tuple[str, str], str] = {}
    for section in fields(config_type):
        section_type: Any = section.default_factory
        if not is_dataclass(section_type):
            continue
        for key in fields(section_type):
            if (section.name, key.name) not in REMOTE:
                found[(section.name, key.name)] = _local_reason(section.name, key.name)
    return found
