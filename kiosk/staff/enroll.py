"""Staff's side of enrollment: approve a kiosk showing a pairing code, with a first config."""

from __future__ import annotations

import copy
from typing import Any

from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import seal
from kiosk.provisioning.enrollment import normalized
from kiosk.staff.client import StaffClient
from kiosk.staff.fleet import Kiosk, next_version
from kiosk.staff.issuer import COMMAND_TTL_S, Issuer
from kiosk.trust.signing import public_key_text


def enroll(client: StaffClient, issuer: Issuer, kiosk: Kiosk, code: str, table: dict[str, Any],
           colleagues: list[str], timeout: float) -> dict[str, Any] | None:
    """Send the enrollment; the kiosk's result, or None if it did not answer in time.

    The kiosk will trust the signing key and ``colleagues`` (public keys); ``table``
    is the rest of its first config.
    """
    topics = protocol.Topics(client.broker.topic_prefix, kiosk.site, kiosk.device_id)
    own = public_key_text(issuer.signer.public)
    config = copy.deepcopy(table)
    keys = [own, *(key for key in colleagues if key != own)]
    config.setdefault("staff", {})["trusted_keys"] = keys
    args = {"key": own, "version": next_version(client, topics), "config": config}
    order, _ = issuer.order("enroll", "enroll", kiosk.target, args, COMMAND_TTL_S)
    client.send(topics.command("enroll"), seal(order, issuer.signer, normalized(code)))
    results = client.wait(lambda: client.results_for(order.cmd_id), timeout)
    return results[0][1] if results else None
