"""Seeded hostile payloads, shared by the decoder tests (unit) and the floods of a running
kiosk (system), so both meet exactly the same cases.

Plain builders, not fixtures: tests call them with their own event ids and seeds.
"""

from __future__ import annotations

import json

from kiosk.counter.members import MemberStatus
from kiosk.mqtt import protocol
from kiosk.testing.fuzz import Case, hostile_payloads

FREE_TEXT = ("display_name", "tier", "reward_unlocked", "next_reward", "badge")
OPTIONAL = ("ack", "reward_unlocked", "next_reward", "points_earned", "tier_changed", "badge")
ALICE = MemberStatus("Alice", 10, "Bronze", 40, 0.2, "Free coffee")
PER_TEMPLATE = 800


def reply_fuzz(event_id: str, member_id: str, count: int, seed: int) -> list[Case]:
    """``count`` broken (and some valid but odd) replies to ``event_id`` for ``member_id``."""
    template = json.loads(protocol.encode_reply(event_id, member_id, ALICE,
                                                protocol.Ack.CREDITED))
    return hostile_payloads(template, count, seed=seed, free_text=FREE_TEXT, optional=OPTIONAL)


def health(**fields: object) -> protocol.Health:
    """A health report of a quiet kiosk, with ``fields`` changed."""
    quiet = {name: 0 for name in protocol.Health.__dataclass_fields__}
    quiet.update(uptime_s=12.0, state="ready", problems=[], cpu_temp_c=None)
    return protocol.Health(**{**quiet, **fields})  # type: ignore[arg-type]


def _unchanged(payload: bytes, body: dict) -> bool:
    try:
        return bool(json.loads(payload) == body)
    except (ValueError, RecursionError):
        return False


def order_fuzz(sealed: bytes, seed: int) -> list[Case]:
    """Cases from a sealed staff order's envelope, then from its body (re-sealed in the
    genuine envelope). None can be valid: any change to a signed body breaks its signature.

    The body has no ``v``: the generator's "remove v" leaves it as signed, so such
    no-op cases are left out (they would be genuine orders).
    """
    envelope = json.loads(sealed)
    outer = hostile_payloads(envelope, PER_TEMPLATE, seed=seed)
    inner = [case for case in hostile_payloads(envelope["body"], PER_TEMPLATE, seed=seed + 1)
             if not _unchanged(case.payload, envelope["body"])]
    head, tail = b'{"v":1,"body":', json.dumps(
        {"kid": envelope["kid"], "sig": envelope["sig"]}).encode()[1:]
    return outer + [Case(case.kind, head + case.payload + b"," + tail) for case in inner]
