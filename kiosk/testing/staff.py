"""Staff's side in tests: a kiosk that trusts a key, and waiting for what it says."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kiosk.config import Config, StaffSection
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import target_for
from kiosk.staff.client import StaffClient
from kiosk.testing.harness import RunningKiosk
from kiosk.trust.signing import Signer, public_key_text


def trusting(config: Config, signer: Signer, **staff: Any) -> Config:
    """``config`` trusting ``signer``'s orders, expiry always checked (CI has no timesyncd)."""
    section = StaffSection(trusted_keys=(public_key_text(signer.public),), clock_synced_file="")
    return replace(config, staff=replace(section, **staff))


def target_of(kiosk: RunningKiosk) -> str:
    """The envelope target naming this one kiosk."""
    return target_for(kiosk.config.kiosk.site, kiosk.app.device_id)


def wait_listening(staff: StaffClient, kiosk: RunningKiosk, timeout: float = 10.0) -> None:
    """Wait until the kiosk hears staff orders.

    It reports its config right after subscribing, on the same connection, so once
    staff hear that report the broker holds the kiosk's subscriptions.
    """
    kiosk.wait_online(timeout)
    topic = kiosk.app.topics.config_reported
    if not staff.wait(lambda: topic in staff.latest, timeout):
        raise TimeoutError("the kiosk never reported its config")


def reported(staff: StaffClient, kiosk: RunningKiosk, condition: Any = lambda body: True,
             timeout: float = 20.0) -> dict[str, Any]:
    """The kiosk's newest ``config/reported``, once ``condition(body)`` holds."""
    topic = kiosk.app.topics.config_reported

    def newest() -> dict[str, Any] | None:
        payload = staff.latest.get(topic)
        body = protocol.decode_reported(payload) if payload else None
        return body if body and condition(body) else None

    body: dict[str, Any] | None = staff.wait(newest, timeout)
    if not body:
        raise TimeoutError(f"no matching config report; last: {staff.latest.get(topic)!r}")
    return body
