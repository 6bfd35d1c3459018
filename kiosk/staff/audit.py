"""The audit log's entries: every staff order as heard on the broker, checked before it is
written down as signed by someone, and what each kiosk said to it.

An order is recorded as signed by a key (and the staff member the key belongs to) only when
its signature verifies against a key the fleet service trusts; anything else is recorded as
it is, *unverified*, with the reason (malformed, unknown key, bad signature), so a forgery
shows in the log rather than vanishing or passing as someone's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Rejected, unseal
from kiosk.staff import fleet
from kiosk.staff.keyring import KeyInfo
from kiosk.trust.signing import Verifier

MAX_ARGS = 2000
"""Characters of an order's arguments kept in the log (a config change is a few hundred)."""


@dataclass(frozen=True)
class Order:
    """One order as the audit log keeps it."""

    heard_at: float
    topic: str
    kind: str
    """``cmd``, ``config``, ``enroll``, or ``?`` when it could not be read."""
    name: str
    target: str
    cmd_id: str
    seq: int
    key_id: str
    signer: str
    """The staff name of the key that signed it, when verified; else ''."""
    verified: bool
    problem: str
    """Why it is not verified ('' when it is)."""
    args: str
    """Its arguments as JSON, cut at :data:`MAX_ARGS`."""


@dataclass(frozen=True)
class Outcome:
    """What one kiosk said to an order."""

    heard_at: float
    site: str
    device_id: str
    cmd_id: str
    outcome: str
    """``ok``/``error`` (a command's result), or ``applied``, ``unchanged``, ``refused``,
    ``rolled back`` (a config)."""
    reason: str


def order_of(topic: str, payload: bytes, verifier: Verifier, names: dict[str, str],
             heard_at: float) -> Order:
    """The audit entry of an order heard on ``topic``; ``names``: key id -> staff name."""
    try:
        sealed = unseal(payload)
    except Rejected as exc:
        return Order(heard_at, topic, "?", "", "", "", 0, "", "", False, str(exc)[:200], "")
    order = sealed.order
    try:
        sealed.verify(verifier)
        verified, problem = True, ""
    except Rejected as exc:
        verified, problem = False, str(exc)[:200]
    return Order(heard_at, topic, order.kind, order.name, order.target, order.cmd_id,
                 order.seq, sealed.kid, names.get(sealed.kid, "") if verified else "",
                 verified, problem, json.dumps(order.args, sort_keys=True)[:MAX_ARGS])


def result_outcome(topic: str, payload: bytes, heard_at: float) -> Outcome | None:
    """A kiosk's command result as an outcome, or None when it is not one."""
    where = protocol.kiosk_of(topic)
    try:
        body = protocol.decode_result(payload)
    except protocol.ProtocolError:
        return None
    if where is None or not body["cmd_id"]:
        return None
    return Outcome(heard_at, where[0], where[1], body["cmd_id"], body["status"],
                   body["error"] or (json.dumps(body["data"], sort_keys=True)[:200]
                                     if body["data"] else ""))


def config_outcomes(topic: str, payload: bytes, heard_at: float) -> list[Outcome]:
    """What a kiosk's ``config/reported`` says of the orders it names: the one in force
    (applied), the last one it refused or rolled back."""
    where = protocol.kiosk_of(topic)
    reported = fleet.json_of(payload)
    if where is None or not reported:
        return []
    found = []
    if isinstance(reported.get("cmd_id"), str) and reported["cmd_id"]:
        found.append(Outcome(heard_at, *where, reported["cmd_id"], "applied", ""))
    rejected: Any = reported.get("rejected")
    if isinstance(rejected, dict) and isinstance(rejected.get("cmd_id"), str):
        reason = str(rejected.get("reason", ""))[:protocol.MAX_REASON]
        word = ("unchanged" if reason.startswith(fleet.UNCHANGED) else
                "rolled back" if reason.startswith("rolled back") else "refused")
        found.append(Outcome(heard_at, *where, rejected["cmd_id"], word, reason))
    return found


def retained_orders(latest: Mapping[str, bytes], prefix: str, keys: list[KeyInfo],
                    device_id: str = "", since: float = 0.0) -> list[dict[str, Any]]:
    """Without the fleet service, what can be known: the desired config each kiosk keeps
    retained (verified with ``keys``) and what its ``config/reported`` says of it, in the
    shape of the service's audit log (when: the order's own ``expires_at`` is no time of
    hearing, so the kiosk's report's arrival is used: now)."""
    verifier = Verifier.from_texts([key.public for key in keys])
    names = {key.key_id: key.name for key in keys}
    now = time.time()
    found = []
    for topic, payload in sorted(latest.items()):
        where = protocol.kiosk_of(topic)
        if (where is None or protocol.leaf_of(topic) != protocol.Leaf.CONFIG_DESIRED
                or not topic.startswith(f"{prefix}/") or (device_id and where[1] != device_id)):
            continue
        order = order_of(topic, payload, verifier, names, now)
        reported = protocol.Topics(prefix, *where).config_reported
        said = [asdict(outcome) for outcome in config_outcomes(reported, latest.get(
            reported, b""), now) if outcome.cmd_id == order.cmd_id]
        found.append({**asdict(order), "outcomes": said})
    return [entry for entry in found if entry["heard_at"] >= since]
