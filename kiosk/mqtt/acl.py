"""The broker's ACL (mosquitto ``acl_file``), generated from the protocol's topics.

Every line is a :class:`~kiosk.mqtt.protocol.Topics` topic with wildcard parts: a
kiosk's own topics are those of device ``%u`` (mosquitto puts the client's username,
its certificate's CN, there) at any site, and "every kiosk's" are those of device
``+``. So the wall can never drift from the topics the kiosk and the backend use.
"""

from __future__ import annotations

from collections.abc import Iterable

from kiosk.mqtt.protocol import (
    ANSWER,
    ANY,
    ASK,
    HASS_PREFIX,
    SERVICE_STATUS,
    STAFF_VIEW,
    Leaf,
    Topics,
    command_topic,
    every_kiosk,
    hass_config_topic,
    hass_status_topic,
    rollout_topic,
    service_topic,
)

USERNAME = "%u"
"""mosquitto's stand-in for the client's username in a ``pattern`` line."""
SUBTREE = "#"
"""MQTT's multi-level wildcard: a topic and everything under it."""
HASS_READS = (Leaf.STATUS, Leaf.STATE, Leaf.HEALTH)
"""The kiosk topics Home Assistant's entities read (:mod:`kiosk.mqtt.hass`)."""


def acl_text(prefix: str, staff: Iterable[str], backends: Iterable[str],
             home_assistants: Iterable[str] = (), discovery_prefix: str = HASS_PREFIX,
             fleet_services: Iterable[str] = ()) -> str:
    """The mosquitto ACL file: kiosk patterns, then one ``user`` block per staff/backend CN.

    mosquitto checks a client's ``user`` lines first (``deny`` before the rest),
    then the patterns, which apply to every client. The ``deny`` line in each
    block takes away what the patterns would give that CN under its own name.
    """
    own = Topics(prefix, ANY, USERNAME)
    every = Topics(prefix, ANY, ANY)
    own_configs = hass_config_topic(discovery_prefix, ANY, USERNAME, ANY)
    lines = [
        "# Loyalty kiosks: who may write and read where (mosquitto 2.0 acl_file).",
        "# Written by tools/make-certs; the username is the client certificate's CN.",
        "#",
        "# Kiosks (CN = device id): write only under their own root, read only their own",
        "# replies, desired config and commands, plus group commands of a site or the fleet.",
        *(f"pattern write {topic}" for topic in (
            own.status, own.state, own.checkin, own.checkins, own.health, own.config_reported,
            own.config_version, own.command_result(ANY), own.enroll)),
        *(f"pattern read {topic}" for topic in (own.reply, own.config_desired, own.command(ANY))),
        "# Group commands (no %u: mosquitto warns at start that the pattern has none).",
        f"pattern read {command_topic(prefix, ANY)}",
        "# Home Assistant discovery (homeassistant.discovery): a kiosk writes only its own",
        "# entities' configs, reads them (to remove them when switched off) and Home",
        "# Assistant's status (to publish them again when Home Assistant restarts).",
        f"pattern write {own_configs}",
        f"pattern read {own_configs}",
        f"pattern read {hass_status_topic(discovery_prefix)}",
    ]
    for identity in sorted(staff):
        lines += ["", "# Staff: read everything; write desired config, commands and rollouts.",
                  f"user {identity}", _deny_own_root(prefix, identity),
                  f"topic read {SUBTREE}", f"topic write {every.config_desired}",
                  f"topic write {every.command(ANY)}", f"topic write {rollout_topic(prefix)}",
                  f"topic write {service_topic(prefix, ASK)}"]
    for identity in sorted(fleet_services):
        lines += ["", "# Fleet service: read what kiosks say (results too), every staff order and",
                  "# rollout, and staff's questions; answer them and say it is online.",
                  f"user {identity}", _deny_own_root(prefix, identity),
                  *(f"topic read {every_kiosk(prefix, leaf)}" for leaf in STAFF_VIEW),
                  f"topic read {every.command(ANY)}", f"topic read {every.command_result(ANY)}",
                  f"topic read {rollout_topic(prefix)}",
                  f"topic read {service_topic(prefix, ASK)}",
                  f"topic write {service_topic(prefix, ANSWER, ANY)}",
                  f"topic write {service_topic(prefix, SERVICE_STATUS)}"]
    for identity in sorted(backends):
        lines += ["", "# Loyalty backend: read every check-in, answer on the kiosk's reply topic.",
                  f"user {identity}", _deny_own_root(prefix, identity),
                  f"topic read {every.checkin}", f"topic read {every.checkins}",
                  f"topic write {every.reply}"]
    for identity in sorted(home_assistants):
        lines += ["", "# Home Assistant: read the discovery configs and what they point at (each",
                  "# kiosk's status, state and health); announce its own status.",
                  f"user {identity}", _deny_own_root(prefix, identity),
                  f"topic read {discovery_prefix}/{SUBTREE}",
                  f"topic write {hass_status_topic(discovery_prefix)}",
                  *(f"topic read {every_kiosk(prefix, leaf)}" for leaf in HASS_READS)]
    return "\n".join(lines) + "\n"


def _deny_own_root(prefix: str, identity: str) -> str:
    """What the kiosk patterns would give ``identity`` as if it were a device: taken away."""
    return f"topic deny {Topics(prefix, ANY, identity).root}/{SUBTREE}"
