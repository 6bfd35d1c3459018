"""Staged rollouts of a config or a command: phases, an abort rule, and a record any staff
machine can resume.

A rollout sends an order (a config change, a command, a software update: its *kind*, see
:mod:`kiosk.staff.kinds`) to a canary of N kiosks, then to growing percentages of the
chosen kiosks (in an order fixed by the rollout's id, so canaries are spread over sites),
waiting after each phase for every online kiosk of it to answer. It stops by itself when
more than ``max_bad_pct`` % of at least ``min_seen`` kiosks that answered (or should have)
refused the change, rolled it back, or said nothing in ``answer_s``.

The **record** (what, to whom, the phases, the rule, where it stands, who paused or
resumed it) is kept retained on the broker under ``<prefix>/_fleet/rollout/<id>``, so
it outlives the command: another staff machine sees it (``kioskctl rollout status``)
and can pause, resume, abort or revert it. The per-kiosk **outcome** is not copied into
the record: it is read from what the kiosks themselves say, by the order's ``cmd_id``
(``<rollout id>.<n>``) — their retained ``config/reported`` and ``state``, and the results
of commands (not retained: heard by the staff machine running the phase, and kept by the
fleet service, which hears them all):

=============  =============================================================
applied        the kiosk carried the order out (config reported, command ok,
               the release running)
reverted       it reports the rollout's revert order (configs only)
unchanged      the kiosk already ran that config (nothing changed)
refused        refused, with the kiosk's reason
rolled back    applied, could not connect (or a release was not healthy), went back
pending        sent while the kiosk is offline: a retained config, or a command its
               broker session keeps, is carried out when it returns
waiting        sent, online, not answered yet (within ``answer_s``)
no answer      sent, online, and silent longer than ``answer_s``
not sent       a later phase
=============  =============================================================

Revert sends each kiosk the rollout sent to (and that did not refuse it) the values
the changed keys had before, as most kiosks reported them when the rollout began.
Secrets (``mqtt.password``) are never reported, so they cannot be reverted this way. A
command cannot be reverted (roll out the command that undoes it).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from kiosk import KioskError
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Rejected, unseal
from kiosk.staff import fleet
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import CONFIG_TTL_S, Issuer
from kiosk.staff.kinds import (
    APPLIED,
    BAD,
    COMMAND,
    CONFIG,
    FINAL,
    NO_ANSWER,
    NOT_SENT,
    ORDER_TTL_S,
    PENDING,
    REVERT,
    UPDATE,
    WAITING,
    Seen,
    Timing,
    command_outcome,
    config_outcome,
    order_id,
    rollout_of,
    update_target,
)

__all__ = ["ABORTED", "NOT_SENT", "RULE", "Record", "RolloutError", "Rollouts", "Rule", "rank"]

RUNNING, PAUSED, ABORTED, DONE, REVERTED = "running", "paused", "aborted", "done", "reverted"
RULE = "stopped by its rule"
MAX_ID = 40
"""Characters in a rollout id: its orders' ``cmd_id`` (``<id>-revert.<12 hex>``) must fit the
envelope's 64."""

Heard = Callable[[str], "dict[str, Any] | None"]
"""``heard(cmd_id)``: the result a kiosk gave to an order, where staff can learn it."""


class RolloutError(KioskError):
    """A rollout cannot be found, or cannot do what was asked in its state."""


@dataclass(frozen=True)
class Rule:
    """When a rollout stops by itself."""

    max_bad_pct: float = 10.0
    min_seen: int = 1
    answer_s: float = 60.0


@dataclass
class Record:
    """A rollout as kept on the broker."""

    id: str
    table: dict[str, Any]
    """The config change (kind ``config``)."""
    selector: dict[str, Any]
    """``{"all": true}``, ``{"site": S}`` or ``{"devices": [...]}``: who it is for."""
    canary: int
    percents: list[float]
    rule: Rule
    by: str
    created_at: float
    state: str = RUNNING
    phase: int = 0
    """Phases finished."""
    sent_at: list[float] = field(default_factory=list)
    """When each phase's orders went out."""
    before: dict[str, Any] = field(default_factory=dict)
    """The changed keys' values before, as most kiosks reported them (for revert)."""
    reason: str = ""
    """Why it stopped, when it did."""
    judged_from: int = 0
    """Kiosks before this place in the order are not judged again (resumed past them)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    kind: str = CONFIG
    """``config``, ``command`` or ``update`` (:mod:`kiosk.staff.kinds`)."""
    command: dict[str, Any] = field(default_factory=dict)
    """``{"name": ..., "args": {...}}`` of a command or update rollout."""
    sent: int = 0
    """Kiosks (in the rollout's order) sent their command so far."""
    ttl_s: float = ORDER_TTL_S
    """How long a command waits for an offline kiosk."""

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Record:
        body = json.loads(payload)
        body.pop("v", None)
        body["rule"] = Rule(**body["rule"])
        return cls(**body)

    def note(self, event: str, by: str) -> None:
        self.history.append({"at": round(time.time(), 3), "event": event, "by": by})

    @property
    def target(self) -> str:
        """The version an update rollout installs ('' for other kinds)."""
        return update_target(self.command.get("args", {})) if self.kind == UPDATE else ""


def new_id() -> str:
    """A short rollout id people can type."""
    return time.strftime("r%m%d-") + uuid.uuid4().hex[:6]


def boundaries(total: int, canary: int, percents: list[float]) -> list[int]:
    """How many kiosks have been sent to after each phase: the canary, then percentages."""
    ends = [min(total, canary)] if canary else []
    for percent in percents:
        ends.append(min(total, math.ceil(total * percent / 100)))
    if not ends or ends[-1] < total:
        ends.append(total)
    return sorted({end for end in ends if end > 0})


def ordered(record: Record, kiosks: list[fleet.Kiosk]) -> list[fleet.Kiosk]:
    """The kiosks a rollout is for, in its fixed pseudo-random order."""
    chosen = fleet.choose(kiosks, record.selector.get("devices", []), record.selector.get("site"),
                          bool(record.selector.get("all")))
    return sorted(chosen, key=lambda k: rank(record.id, k.site, k.device_id))


def rank(rollout_id: str, site: str, device_id: str) -> bytes:
    """A kiosk's place in a rollout's order: stable, and unrelated to names or sites."""
    return hashlib.sha256(f"{rollout_id}/{site}/{device_id}".encode()).digest()


def _desired_cmd_id(client: StaffClient, topics: protocol.Topics) -> str:
    payload = client.latest.get(topics.config_desired)
    if not payload:
        return ""
    try:
        return unseal(payload).order.cmd_id
    except Rejected:
        return ""


class Rollouts:
    """Starts, advances and steers rollouts over one staff connection.

    ``heard`` looks up command results this connection did not hear (the fleet service's
    record of them); without it, a command's result is known only if heard here."""

    def __init__(self, client: StaffClient, issuer: Issuer | None, by: str,
                 progress: fleet.Progress = lambda _done, _total: None,
                 heard: Heard | None = None) -> None:
        self._client = client
        self._issuer = issuer
        self._by = by
        self._progress = progress
        self._prefix = client.broker.topic_prefix
        self._heard = heard

    # --- the record on the broker --------------------------------------------------

    def records(self) -> list[Record]:
        """Every rollout the broker keeps, newest first."""
        found = []
        for topic, payload in list(self._client.latest.items()):
            if topic.startswith(protocol.rollout_topic(self._prefix, "")) and payload:
                try:
                    found.append(Record.from_json(payload))
                except (ValueError, TypeError, KeyError):
                    continue  # not one we can read: not ours to judge
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def get(self, rollout_id: str) -> Record:
        """The rollout ``rollout_id``, as the broker has it now."""
        payload = self._client.latest.get(protocol.rollout_topic(self._prefix, rollout_id))
        if not payload:
            raise RolloutError(f"no rollout {rollout_id!r} on the broker")
        return Record.from_json(payload)

    def save(self, record: Record) -> None:
        self._client.send(protocol.rollout_topic(self._prefix, record.id), record.to_json(),
                          retain=True)

    # --- what happens ----------------------------------------------------------------

    def start(self, table: dict[str, Any], selector: dict[str, Any], canary: int,
              percents: list[float], rule: Rule, rollout_id: str = "",
              command: dict[str, Any] | None = None) -> Record:
        """A new rollout of ``table`` (a config change) or ``command`` (``{"name", "args"}``),
        recorded before anything is sent; then advanced."""
        rollout_id = rollout_id or new_id()
        if protocol.rollout_topic(self._prefix, rollout_id) in self._client.latest:
            raise RolloutError(f"rollout {rollout_id} exists: resume it, or choose another id")
        if (not protocol.TOPIC_WORD.match(rollout_id) or "." in rollout_id
                or len(rollout_id) > MAX_ID):
            raise RolloutError(f"a rollout id is 1-{MAX_ID} letters, digits, '_' or '-'")
        record = Record(rollout_id, table, selector, canary, percents, rule, self._by,
                        round(time.time(), 3))
        if command is not None:
            record.kind = UPDATE if command["name"] == UPDATE else COMMAND
            record.command = command
            _ = record.target  # an update names the version it installs, or fails here
        kiosks = ordered(record, fleet.survey(self._client))
        if not kiosks:
            raise fleet.UnknownKiosk("no kiosk to roll out to")
        if record.kind == CONFIG:
            record.before = self._before(kiosks, table)
        record.note("started", self._by)
        self.save(record)
        return self.advance(record)

    def advance(self, record: Record) -> Record:
        """Send the next phases, each once the one before has answered, until the rollout is
        done, stopped by its rule, or paused or aborted from elsewhere."""
        while record.state == RUNNING:
            kiosks = ordered(record, fleet.survey(self._client))
            ends = boundaries(len(kiosks), record.canary, record.percents)
            if record.phase >= len(ends):
                record.state = DONE
                record.note("done", self._by)
                break
            batch = kiosks[:ends[record.phase]]
            fresh = record.sent  # commands to kiosks from here on are sent by this call
            self._send(record, batch, record.id)
            record.sent_at.append(round(time.time(), 3))
            self.save(record)
            self._wait(record, batch, 0 if record.kind == CONFIG else fresh)
            bad = self._judge(record, batch, fresh)
            latest = self.get(record.id)  # paused or aborted meanwhile, from anywhere?
            if latest.state != RUNNING:
                return latest
            if bad:
                record.state, record.reason = ABORTED, f"{RULE}: {bad}"
                record.note(record.reason, self._by)
            else:
                record.phase += 1
            self.save(record)
        self.save(record)
        return record

    def steer(self, rollout_id: str, event: str) -> Record:
        """Pause, resume, abort or revert a rollout (from any staff machine)."""
        record = self.get(rollout_id)
        allowed = {"pause": (RUNNING,), "resume": (PAUSED, ABORTED), "abort": (RUNNING, PAUSED),
                   "revert": (RUNNING, PAUSED, ABORTED, DONE)}[event]
        if record.state not in allowed:
            raise RolloutError(f"rollout {rollout_id} is {record.state}: cannot {event} it")
        if event == "revert" and record.kind != CONFIG:
            raise RolloutError(f"rollout {rollout_id} sent a command: it cannot be reverted "
                               "(roll out the command that undoes it)")
        record.note(event, self._by)
        if event == "pause":
            record.state = PAUSED
        elif event == "abort":
            record.state, record.reason = ABORTED, f"aborted by {self._by}"
        elif event == "resume":
            if record.state == ABORTED:  # staff judged the stopped phase: go on past it
                kiosks = ordered(record, fleet.survey(self._client))
                ends = boundaries(len(kiosks), record.canary, record.percents)
                record.judged_from = ends[min(record.phase, len(ends) - 1)]
                record.phase += 1
            record.state, record.reason = RUNNING, ""
            self.save(record)
            return self.advance(record)
        else:
            self._revert(record)
        self.save(record)
        return record

    def outcomes(self, record: Record) -> dict[str, tuple[str, str, str]]:
        """Per kiosk ``(site, outcome, reason)``, from what the kiosks say."""
        kiosks = ordered(record, fleet.survey(self._client))
        ends = boundaries(len(kiosks), record.canary, record.percents)
        now = time.time()
        found: dict[str, tuple[str, str, str]] = {}
        for index, kiosk in enumerate(kiosks):
            phase = next(i for i, end in enumerate(ends) if index < end)
            sent_at = record.sent_at[phase] if phase < len(record.sent_at) else None
            found[kiosk.device_id] = (kiosk.site, *self._outcome(record, kiosk, index, sent_at,
                                                                 now))
        return found

    # --- the parts -------------------------------------------------------------------

    def _outcome(self, record: Record, kiosk: fleet.Kiosk, index: int, sent_at: float | None,
                 now: float) -> tuple[str, str]:
        """Where one kiosk (the ``index``-th of the rollout's order) stands."""
        topics = protocol.Topics(self._prefix, kiosk.site, kiosk.device_id)
        online = kiosk.status == "online"
        if record.kind == CONFIG:
            sent = rollout_of(_desired_cmd_id(self._client, topics)) in (record.id,
                                                                          record.id + REVERT)
            reported = fleet.json_of(self._client.latest.get(topics.config_reported))
            return config_outcome(record.id, Seen(online, sent, sent_at, reported, {}, None),
                                  Timing(now, record.rule.answer_s, CONFIG_TTL_S))
        state = fleet.json_of(self._client.latest.get(topics.state))
        result = self._result(order_id(record.id, kiosk.site, kiosk.device_id), kiosk)
        seen = Seen(online, index < record.sent, sent_at, {}, state, result)
        return command_outcome(record.kind, record.target, seen,
                               Timing(now, record.rule.answer_s, record.ttl_s))

    def _result(self, cmd_id: str, kiosk: fleet.Kiosk) -> dict[str, Any] | None:
        result = self._client.result_of(cmd_id, kiosk.site, kiosk.device_id)
        if result is None and self._heard is not None:
            return self._heard(cmd_id)
        return result

    def _send(self, record: Record, kiosks: list[fleet.Kiosk], series: str,
              table: dict[str, Any] | None = None) -> None:
        """Send the order to each kiosk not yet sent one of ``series`` (resuming skips them)."""
        if self._issuer is None:
            raise RolloutError("no signing key: cannot send orders")
        if record.kind != CONFIG:
            self._send_command(record, kiosks)
            return
        todo = [k for k in kiosks if rollout_of(_desired_cmd_id(
            self._client, protocol.Topics(self._prefix, k.site, k.device_id))) != series]
        messages = []
        for kiosk in todo:
            topics = protocol.Topics(self._prefix, kiosk.site, kiosk.device_id)
            _order, payload = self._issuer.config(
                kiosk.target, fleet.next_version(self._client, topics),
                record.table if table is None else table,
                cmd_id=f"{series}.{uuid.uuid4().hex[:12]}")
            messages.append((topics.config_desired, payload))
        self._client.send_all(messages, retain=True)
        self._progress(len(todo), len(todo))

    def _send_command(self, record: Record, kiosks: list[fleet.Kiosk]) -> None:
        """The command to each kiosk of the phase not sent it yet, on its own topic, never
        retained, expiring with the order (see :mod:`kiosk.staff.kinds`)."""
        assert self._issuer is not None
        name, args = record.command["name"], record.command.get("args", {})
        messages = []
        for kiosk in kiosks[record.sent:]:
            _order, payload = self._issuer.command(
                kiosk.target, name, args, ttl_s=record.ttl_s,
                cmd_id=order_id(record.id, kiosk.site, kiosk.device_id))
            messages.append((protocol.Topics(self._prefix, kiosk.site, kiosk.device_id)
                             .command(name), payload))
        self._client.send_all(messages, expiry_s=record.ttl_s)
        record.sent = max(record.sent, len(kiosks))
        self._progress(len(messages), len(messages))

    def _wait(self, record: Record, batch: list[fleet.Kiosk], start: int) -> None:
        """Until every online kiosk of ``batch`` from ``start`` on has answered, or
        ``answer_s`` has passed."""
        index = {batch[place].device_id: (place, batch[place])
                 for place in range(start, len(batch))}
        answers: dict[str, str | tuple[str, ...]] = {}
        for device_id, (_place, kiosk) in index.items():
            topics = protocol.Topics(self._prefix, kiosk.site, device_id)
            answers[device_id] = (topics.config_reported if record.kind == CONFIG else
                                  (topics.command_result(record.command["name"]), topics.state))
        self._client.watch(answers, lambda device_id: self._outcome(
            record, index[device_id][1], index[device_id][0], None, time.time())[0] not in (
            WAITING,), record.rule.answer_s)

    def _judge(self, record: Record, batch: list[fleet.Kiosk], fresh: int) -> str:
        """Why the rule stops the rollout now, or ''. A command's kiosks before ``fresh`` were
        sent their order before this call (an earlier phase, or this phase before a pause,
        perhaps from another staff machine that heard their results): they count with what
        they finally said, and are not held against the rollout for being unheard here."""
        now = time.time()
        counts: Counter[str] = Counter()
        for index in range(record.judged_from, len(batch)):
            name = self._outcome(record, batch[index], index, record.sent_at[-1], now)[0]
            if record.kind == CONFIG or index >= fresh or name in FINAL:
                counts[name] += 1
        seen = sum(counts[name] for name in (*FINAL, NO_ANSWER))
        bad = sum(counts[name] for name in BAD)
        if seen >= record.rule.min_seen and 100 * bad > record.rule.max_bad_pct * seen:
            parts = ", ".join(f"{counts[name]} {name}" for name in BAD if counts[name])
            return (f"{bad} of {seen} kiosks bad ({parts}): more than "
                    f"{record.rule.max_bad_pct:g} %")
        return ""

    def _before(self, kiosks: list[fleet.Kiosk], table: dict[str, Any]) -> dict[str, Any]:
        """The changed keys' values before the rollout, as most kiosks report them."""
        seen: Counter[str] = Counter()
        for kiosk in kiosks:
            topics = protocol.Topics(self._prefix, kiosk.site, kiosk.device_id)
            config = fleet.json_of(self._client.latest.get(topics.config_reported)).get("config")
            if not isinstance(config, dict):
                continue
            values = {section: {key: (config.get(section) or {}).get(key) for key in keys}
                      for section, keys in table.items() if isinstance(keys, dict)}
            seen[json.dumps(values, sort_keys=True)] += 1
        return json.loads(seen.most_common(1)[0][0]) if seen else {}

    def _revert(self, record: Record) -> None:
        if not record.before:
            raise RolloutError(f"rollout {record.id}: no earlier values known to revert to")
        now = time.time()
        sent = [kiosk for index, kiosk in enumerate(ordered(record, fleet.survey(self._client)))
                if self._outcome(record, kiosk, index, None, now)[0]
                in (APPLIED, PENDING, WAITING, NO_ANSWER)]
        record.state = REVERTED
        self._send(record, sent, record.id + REVERT, record.before)
        record.reason = f"reverted {len(sent)} kiosks to the values before"
