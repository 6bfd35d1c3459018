"""Rollout kinds: what order a rollout sends each kiosk, and how what the kiosk says maps to
an outcome (the contract between fleet rollouts and software updates).

``config``
    a signed desired config, retained on the kiosk's ``config/desired``: a kiosk that is
    offline finds it when it returns. Outcome from its retained ``config/reported``
    (applied, unchanged, refused, rolled back), by the order's ``cmd_id``.
``command``
    a signed command (``restart``, ``flush-cache`` …) on the kiosk's own ``cmd/<name>``,
    QoS 1 and **never retained** (a retained command would run again at every reconnect).
    A kiosk that is offline gets it from its persistent broker session when it returns,
    unless it expired first: the order's ``expires_at`` and its MQTT 5 message expiry are
    both :data:`ORDER_TTL_S`, the kiosk's default session expiry (a session the broker has
    dropped holds nothing anyway). Outcome from the command's result: ``ok`` applied,
    ``error`` refused with the kiosk's reason.
``update``
    the command ``update`` with ``{"manifest": <signed manifest of version V>, "downgrade":
    bool}``.
    Outcome from the retained ``state.release``: applied when ``running == V`` and nothing
    is on trial, rolled back when ``last_failure.version == V``, waiting while
    ``trying == V``; refused when the command's result is an error.

For every kind: *not sent* (a later phase), *pending* (sent while the kiosk is offline,
not expired), *waiting* (sent, not answered within ``answer_s``), *no answer* (silent
longer than ``answer_s``, or offline past the order's expiry).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from kiosk import KioskError
from kiosk.staff import fleet
from kiosk.trust.release import ManifestError, parse_manifest

CONFIG, COMMAND, UPDATE = "config", "command", "update"
APPLIED, UNCHANGED, REFUSED, ROLLED_BACK = "applied", "unchanged", "refused", "rolled back"
REVERTED_TO = "reverted"
PENDING, WAITING, NO_ANSWER, NOT_SENT = "pending", "waiting", "no answer", "not sent"
BAD = (REFUSED, ROLLED_BACK, NO_ANSWER)
"""Outcomes the abort rule counts against a rollout."""
FINAL = (APPLIED, UNCHANGED, REFUSED, ROLLED_BACK, REVERTED_TO)
REVERT = "-revert"
ORDER_TTL_S = 86400.0
"""How long a rollout's command waits for an offline kiosk: the kiosk's session expiry."""


class KindError(KioskError, ValueError):
    """A command rollout's arguments do not make an order of its kind."""


def kind_of(command: str) -> str:
    """The rollout kind of a command: ``update`` is a software update, the rest commands."""
    return UPDATE if command == UPDATE else COMMAND


def update_target(args: dict[str, Any]) -> str:
    """The version an ``update`` order installs: its signed release manifest's (checked for
    shape here, so a rollout never starts with an order every kiosk would refuse; the
    signature is each kiosk's to check)."""
    try:
        return parse_manifest(args.get("manifest")).release.version
    except ManifestError as exc:
        raise KindError(f'an update needs {{"manifest": <a signed manifest.json>}}: {exc}') \
            from None


def order_id(series: str, site: str, device_id: str) -> str:
    """The ``cmd_id`` of a rollout's command to one kiosk: known without being stored, so
    any staff machine can find the kiosk's result of it (``<rollout id>.<12 hex>``)."""
    return f"{series}.{hashlib.sha256(f'{site}/{device_id}'.encode()).hexdigest()[:12]}"


def rollout_of(cmd_id: Any) -> str:
    """The rollout (or revert series) an order's ``cmd_id`` belongs to, or ''."""
    return cmd_id.rpartition(".")[0] if isinstance(cmd_id, str) else ""


@dataclass(frozen=True)
class Seen:
    """What staff know of one kiosk when judging a rollout's order to it."""

    online: bool
    sent: bool
    """Its order has gone out."""
    sent_at: float | None
    """When (None: not known, so never judged silent for too long)."""
    reported: dict[str, Any]
    """Its retained ``config/reported``."""
    state: dict[str, Any]
    """Its retained ``state``."""
    result: dict[str, Any] | None
    """The result of its command order, if heard."""


@dataclass(frozen=True)
class Timing:
    """How long answers may take."""

    now: float
    answer_s: float
    ttl_s: float = ORDER_TTL_S


def config_outcome(rollout_id: str, seen: Seen, timing: Timing) -> tuple[str, str]:
    """Where one kiosk stands in a config rollout, and its reason when it refused."""
    ours = {rollout_id, rollout_id + REVERT}
    cmd_id = rollout_of(seen.reported.get("cmd_id"))
    if cmd_id == rollout_id + REVERT:
        return REVERTED_TO, ""
    if cmd_id == rollout_id:
        return APPLIED, ""
    rejected = seen.reported.get("rejected")
    if isinstance(rejected, dict) and rollout_of(rejected.get("cmd_id")) in ours:
        reason = str(rejected.get("reason", ""))
        if reason.startswith(fleet.UNCHANGED):
            return UNCHANGED, ""
        return (ROLLED_BACK if reason.startswith("rolled back") else REFUSED), reason
    return _silent(seen, timing, "")


def command_outcome(kind: str, target: str, seen: Seen, timing: Timing) -> tuple[str, str]:
    """Where one kiosk stands in a command or update rollout (``target``: the version an
    update installs), and the kiosk's reason when it refused or rolled back."""
    if not seen.sent:
        return NOT_SENT, ""
    release = seen.state.get("release") if kind == UPDATE else None
    trying = ""
    if isinstance(release, dict):
        failure = release.get("last_failure")
        if release.get("running") == target and release.get("trying") is None:
            return APPLIED, ""
        if isinstance(failure, dict) and failure.get("version") == target:
            return ROLLED_BACK, str(failure.get("reason", ""))
        trying = target if release.get("trying") == target else ""
    if seen.result is not None:
        if seen.result.get("status") != "ok":
            return REFUSED, str(seen.result.get("error", ""))
        if kind != UPDATE:
            return APPLIED, ""
    return _silent(seen, timing, f"still trying {trying}" if trying else "")


def _silent(seen: Seen, timing: Timing, doing: str) -> tuple[str, str]:
    """Sent and not answered (yet): pending, waiting or no answer."""
    if not seen.sent:
        return NOT_SENT, ""
    waited = None if seen.sent_at is None else timing.now - seen.sent_at
    if not seen.online:
        if waited is not None and waited > timing.ttl_s:
            return NO_ANSWER, "offline until its order expired"
        return PENDING, ""
    if waited is not None and waited > timing.answer_s:
        return NO_ANSWER, doing
    return WAITING, doing
