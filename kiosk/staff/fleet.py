"""What kioskctl does over MQTT: see the fleet, push configs, run commands, wait for answers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kiosk import KioskError
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Rejected, target_for, unseal
from kiosk.mqtt.protocol import Leaf
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import Issuer

Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each kiosk answers."""


class UnknownKiosk(KioskError):
    """No kiosk of that name has been heard of on the broker."""


@dataclass(frozen=True)
class Kiosk:
    """One kiosk as its retained messages describe it."""

    site: str
    device_id: str
    status: str
    """``online``, ``offline`` or ``?`` (no status heard)."""
    firmware: str
    state: str
    config_version: int | None
    outbox_depth: int | None
    awaiting_backend: int | None
    """Check-ins sent and not acknowledged by the backend (from the last health report)."""
    awaiting_oldest_s: float | None
    last_seen: float | None
    """When its last health report was sent (its clock), or None."""
    waiting_to_enroll: bool
    release: dict[str, Any] | None = None
    """The software release its state reports (running, trying, last failure), or None."""

    @property
    def target(self) -> str:
        """The envelope target naming this kiosk."""
        return target_for(self.site, self.device_id)


KIOSK_SAYS = {Leaf.STATUS, Leaf.STATE, Leaf.CONFIG_REPORTED, Leaf.CONFIG_VERSION, Leaf.HEALTH,
              Leaf.ENROLL}
"""What only a kiosk publishes: having heard one of them, staff know the kiosk exists."""


UNCHANGED = "unchanged:"
"""How a kiosk answers a config equal to the one in force: nothing changed, nothing to do."""


def survey(client: StaffClient) -> list[Kiosk]:
    """Every kiosk the broker has retained messages of, by site and id."""
    return survey_of(client.kiosks())


def survey_of(kiosks: Mapping[tuple[str, str], Mapping[str, bytes]]) -> list[Kiosk]:
    """Every kiosk of ``kiosks`` (:func:`kiosks_of`) staff have heard from, by site and id."""
    found = []
    for (site, device_id), leaves in sorted(kiosks.items()):
        state = json_of(leaves.get(Leaf.STATE))
        version = json_of(leaves.get(Leaf.CONFIG_VERSION)) or json_of(
            leaves.get(Leaf.CONFIG_REPORTED))
        health = json_of(leaves.get(Leaf.HEALTH))
        if not (KIOSK_SAYS & set(leaves)):
            continue  # only results or a desired config: not a kiosk we have heard from
        found.append(Kiosk(
            site=site, device_id=device_id,
            status=leaves.get(Leaf.STATUS, b"?").decode("ascii", "replace"),
            firmware=str(state.get("firmware", "")), state=str(state.get("state", "")),
            config_version=_int(version.get("version")),
            outbox_depth=_int(health.get("outbox_depth")),
            awaiting_backend=_int(health.get("awaiting_backend")),
            awaiting_oldest_s=_number(health.get("awaiting_oldest_s")),
            last_seen=_number(health.get("sent_at")),
            waiting_to_enroll=bool(leaves.get(Leaf.ENROLL)),
            release=release_of(leaves.get(Leaf.STATE)),
        ))
    return found


def release_of(state: bytes | None) -> dict[str, Any] | None:
    """The ``release`` a kiosk's retained state reports (None: none, or unreadable)."""
    try:
        return protocol.decode_release(state) if state else None
    except protocol.ProtocolError:
        return None


def details(client: StaffClient, kiosk: Kiosk) -> dict[str, Any]:
    """Everything retained about one kiosk, decoded."""
    return details_of(kiosk, client.kiosks().get((kiosk.site, kiosk.device_id), {}))


def details_of(kiosk: Kiosk, leaves: Mapping[str, bytes]) -> dict[str, Any]:
    """Everything retained about one kiosk (its ``leaves``), decoded."""
    shown: dict[str, Any] = {"site": kiosk.site, "device_id": kiosk.device_id,
                             "status": kiosk.status}
    for leaf in (Leaf.STATE, Leaf.CONFIG_REPORTED, Leaf.HEALTH, Leaf.ENROLL):
        if leaf in leaves:
            shown[leaf] = json_of(leaves[leaf]) or leaves[leaf].decode("utf-8", "replace")
    return shown


WATCHED = ("state", "outbox_depth", "awaiting_backend", "scans", "checkins", "delivered",
           "bad_messages", "cpu_temp_c")
"""The health fields ``kioskctl watch`` prints on each line (``--json`` prints them all)."""


def health_of(payload: bytes) -> dict[str, Any]:
    """A health report as sent, or {} when it cannot be read."""
    return json_of(payload)


def choose(kiosks: list[Kiosk], device_ids: list[str], site: str | None = None,
           everyone: bool = False) -> list[Kiosk]:
    """The kiosks named, those of ``site``, or all; :class:`UnknownKiosk` for a missing name."""
    if everyone:
        return kiosks
    if site is not None:
        chosen = [kiosk for kiosk in kiosks if kiosk.site == site]
        if not chosen:
            raise UnknownKiosk(f"no kiosk heard of at site {site!r}")
        return chosen
    by_id = {kiosk.device_id: kiosk for kiosk in kiosks}
    missing = [device_id for device_id in device_ids if device_id not in by_id]
    if missing:
        raise UnknownKiosk(f"no kiosk heard of named {', '.join(missing)}")
    return [by_id[device_id] for device_id in device_ids]


def apply_config(client: StaffClient, issuer: Issuer, kiosks: list[Kiosk],
                 table: dict[str, Any], timeout: float,
                 progress: Progress = lambda _done, _total: None) -> dict[str, dict[str, Any]]:
    """Send ``table`` (retained, signed) to each kiosk with its next version; wait for each.

    Returns per device ``{"outcome": "applied"|"unchanged"|"refused"|"no answer", "version",
    "reason"}`` ("unchanged": the kiosk already ran that config, and changed nothing).
    """
    prefix = client.broker.topic_prefix
    waiting: dict[str, tuple[Kiosk, str, int]] = {}
    messages = []
    for kiosk in kiosks:
        topics = protocol.Topics(prefix, kiosk.site, kiosk.device_id)
        version = next_version(client, topics)
        order, payload = issuer.config(kiosk.target, version, table)
        messages.append((topics.config_desired, payload))
        waiting[kiosk.device_id] = (kiosk, order.cmd_id, version)
    client.send_all(messages, retain=True)
    outcomes: dict[str, dict[str, Any]] = {}

    def answered(device_id: str) -> bool:
        outcome = _config_outcome(client, prefix, *waiting[device_id])
        if outcome:
            outcomes[device_id] = outcome
        return outcome is not None

    reports = {device_id: protocol.Topics(prefix, kiosk.site, device_id).config_reported
               for device_id, (kiosk, _cmd_id, _version) in waiting.items()}
    client.watch(reports, answered, timeout, lambda done: progress(done, len(kiosks)))
    waiting = {device: entry for device, entry in waiting.items() if device not in outcomes}
    for device_id, (_kiosk, _cmd_id, version) in waiting.items():
        outcomes[device_id] = {"outcome": "no answer", "version": version, "reason": ""}
    return outcomes


def run_command(client: StaffClient, issuer: Issuer, kiosks: list[Kiosk], group: str | None,
                name: str, args: dict[str, Any], timeout: float,
                progress: Progress = lambda _done, _total: None,
                ) -> dict[str, dict[str, Any] | None]:
    """Send command ``name`` to one kiosk, or once to a group topic; wait for every answer.

    ``group`` is None (``kiosks`` has one kiosk), a site, or ``_all`` for the fleet.
    Returns per device the result body, or None when it did not answer in time.
    """
    prefix = client.broker.topic_prefix
    if group is None:
        (kiosk,) = kiosks
        target = kiosk.target
        topic = protocol.Topics(prefix, kiosk.site, kiosk.device_id).command(name)
    elif group == protocol.ALL:
        target, topic = target_for(), protocol.command_topic(prefix, name=name)
    else:
        target, topic = target_for(group), protocol.command_topic(prefix, group, name=name)
    order, payload = issuer.command(target, name, args)
    client.send(topic, payload)
    answers: dict[str, dict[str, Any] | None] = {kiosk.device_id: None for kiosk in kiosks}
    deadline = time.monotonic() + timeout
    while None in answers.values() and time.monotonic() < deadline:
        client.wait(lambda: len(client.results_for(order.cmd_id)) > _answered(answers),
                    min(1.0, max(0.0, deadline - time.monotonic())))
        for result_topic, body in client.results_for(order.cmd_id):
            where = protocol.kiosk_of(result_topic)
            if where and answers.get(where[1], 0) is None:
                answers[where[1]] = body
                progress(_answered(answers), len(answers))
    return answers


def _answered(answers: dict[str, dict[str, Any] | None]) -> int:
    return sum(body is not None for body in answers.values())


def next_version(client: StaffClient, topics: protocol.Topics) -> int:
    """One above what the kiosk reports and what staff last asked of it."""
    reported = json_of(client.latest.get(topics.config_reported))
    versions = [_int(reported.get("version")) or 0]
    desired = client.latest.get(topics.config_desired)
    if desired:
        with contextlib.suppress(Rejected):  # not a valid order: it does not count
            versions.append(_int(unseal(desired).order.args.get("version")) or 0)
    return max(versions) + 1


def _config_outcome(client: StaffClient, prefix: str, kiosk: Kiosk, cmd_id: str,
                    version: int) -> dict[str, Any] | None:
    topics = protocol.Topics(prefix, kiosk.site, kiosk.device_id)
    reported = json_of(client.latest.get(topics.config_reported))
    if reported.get("cmd_id") == cmd_id:
        return {"outcome": "applied", "version": version, "reason": ""}
    rejected = reported.get("rejected") or {}
    if isinstance(rejected, dict) and rejected.get("cmd_id") == cmd_id:
        reason = str(rejected.get("reason"))
        outcome = "unchanged" if reason.startswith(UNCHANGED) else "refused"
        return {"outcome": outcome, "version": version, "reason": reason}
    return None


def json_of(payload: bytes | None) -> dict[str, Any]:
    """A retained payload as a bounded JSON object, or {} when it is not one."""
    if not payload:
        return {}
    try:
        return protocol.decode_object(payload, protocol.STAFF_VIEW_LIMITS).body
    except protocol.ProtocolError:
        return {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
