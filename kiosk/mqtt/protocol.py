"""The MQTT topic tree and payload schemas — the only place that names them.

Root: ``<prefix>/<site>/<device_id>/``. Payloads are JSON objects carrying a
``v`` schema version; a reader rejects what it cannot understand with
:class:`ProtocolError` instead of guessing. Every incoming payload is read
through :mod:`kiosk.mqtt.wire` with the limits named here: its size before
parsing, nesting, every string's length and every number's range.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kiosk.counter.checkin import CheckIn
from kiosk.counter.members import MemberStatus, redact
from kiosk.mqtt.wire import Fields, Limits, ProtocolError, load_object

__all__ = [
    "ALL",
    "ANY",
    "CHECKIN_BATCH_LIMITS",
    "CHECKIN_LIMITS",
    "MAX_ANSWERS",
    "MAX_CHECKINS",
    "MAX_ID",
    "MAX_LABEL",
    "MAX_MEMBER_ID",
    "MAX_NAME",
    "MAX_POINTS",
    "MAX_REASON",
    "MAX_SEQ",
    "MAX_TIME",
    "OFFLINE",
    "ONLINE",
    "PACKET_ROOM",
    "REPLY_BATCH_LIMITS",
    "REPLY_LIMITS",
    "STAFF_VIEW",
    "STAFF_VIEW_LIMITS",
    "STATE_LIMITS",
    "TOPIC_WORD",
    "VERSION",
    "Ack",
    "Answer",
    "CheckIn",
    "Health",
    "Leaf",
    "MemberStatus",
    "ProtocolError",
    "Topics",
    "Unreadable",
    "Waiting",
    "batch_bytes",
    "checkin_batches_of_all_kiosks",
    "checkins_of_all_kiosks",
    "command_topic",
    "decode_checkin",
    "decode_checkins",
    "decode_enroll_request",
    "decode_object",
    "decode_replies",
    "decode_reply",
    "decode_reported",
    "decode_result",
    "decode_state",
    "decode_waiting",
    "device_of",
    "encode_checkin",
    "encode_checkins",
    "encode_config_version",
    "encode_enroll_request",
    "encode_health",
    "encode_refusal",
    "encode_replies",
    "encode_reply",
    "encode_reported",
    "encode_result",
    "encode_state",
    "event_id_of",
    "every_kiosk",
    "fleet_service_view",
    "is_batch",
    "is_command",
    "is_command_result",
    "kiosk_of",
    "leaf_of",
    "mark_replayed",
    "member_of",
    "one_kiosk_view",
    "pack",
    "redact",
    "reply_topic_for",
    "rollout_topic",
    "service_topic",
    "staff_view",
    "summary_view",
]
"""What the other end of the protocol needs, the reference backend included: it reaches the
kiosk's check-in and member standing (and :func:`redact`, so its logs hide member ids the same
way, with a key of its own) through this module only."""

VERSION = 1
ONLINE = b"online"
OFFLINE = b"offline"
ALL = "_all"
"""The site or device level of a group topic: ``<prefix>/<site>/_all/cmd/<name>`` is a
site's kiosks, ``<prefix>/_all/_all/cmd/<name>`` the fleet's."""
ANY = "+"
"""MQTT's one-level wildcard, for a site, a device or a command name in a subscription."""
TOPIC_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""Ids that become MQTT topic levels: no '/', '+', '#', spaces or empties."""
_CMD, _RESULT = "cmd", "result"


class Leaf(StrEnum):
    """What follows a kiosk's root in each of its fixed topics (commands have a name too)."""

    STATUS = "status"
    STATE = "state"
    CHECKIN = "evt/checkin"
    CHECKINS = "evt/checkins"
    REPLY = "reply"
    HEALTH = "tele/health"
    CONFIG_DESIRED = "config/desired"
    CONFIG_REPORTED = "config/reported"
    CONFIG_VERSION = "config/version"
    ENROLL = "enroll"


REPLY_LIMITS = Limits(max_bytes=4096, max_depth=2, max_string=1024)
"""A real reply is about 250 bytes of flat JSON; a refusal's reason may be up to
:data:`MAX_REASON` characters."""
REPLY_BATCH_LIMITS = Limits(max_bytes=60_000, max_depth=3, max_string=1024)
"""A batch of answers: under the shipped broker's 64 KiB packet limit."""
MAX_ANSWERS = 200
"""Answers in one batch at most (about 250 bytes each)."""
CHECKIN_LIMITS = Limits(max_bytes=4096, max_depth=2, max_string=256)
"""A real check-in is about 250 bytes of flat JSON."""
CHECKIN_BATCH_LIMITS = Limits(max_bytes=60_000, max_depth=3, max_string=256)
"""A batch of check-ins: under the shipped broker's 64 KiB packet limit."""
MAX_CHECKINS = 200
"""Check-ins in one batch at most (about 250 bytes each)."""
STATE_LIMITS = Limits(max_bytes=4096, max_depth=3, max_string=1024)
"""A retained state: a lifecycle word, the reason, the firmware version, the release."""
MAX_REASON = 1024
"""Characters in a state's reason or a refusal's reason."""
MAX_ID = 64
"""Characters in an ``event_id``, ``boot_id`` or ``device_id``."""
MAX_MEMBER_ID = 128
MAX_NAME = 40
"""Characters in a member's display name (the screen shows far fewer)."""
MAX_LABEL = 32
"""Characters in a tier, a reward or a check-in's source."""
MAX_POINTS = 1_000_000_000
MAX_SEQ = 2**63 - 1
MAX_TIME = 1e11
"""Seconds since the epoch: the year 5138."""
STAFF_VIEW_LIMITS = Limits(max_bytes=64 * 1024, max_depth=8, max_string=4096)
"""What staff tools read from kiosks (a reported config is the largest, a few KiB)."""


@dataclass(frozen=True)
class Topics:
    """Every topic one kiosk uses."""

    prefix: str
    site: str
    device_id: str

    @property
    def root(self) -> str:
        """``<prefix>/<site>/<device_id>``."""
        return f"{self.prefix}/{self.site}/{self.device_id}"

    @property
    def status(self) -> str:
        """Retained ``online``/``offline``; also the last will."""
        return f"{self.root}/{Leaf.STATUS}"

    @property
    def state(self) -> str:
        """Retained lifecycle state as JSON."""
        return f"{self.root}/{Leaf.STATE}"

    @property
    def checkin(self) -> str:
        """Check-in events, QoS 1."""
        return f"{self.root}/{Leaf.CHECKIN}"

    @property
    def checkins(self) -> str:
        """Batches of check-ins, QoS 1: a rush or a backlog in a few messages, for a backend
        that subscribes here (see :func:`encode_checkins`)."""
        return f"{self.root}/{Leaf.CHECKINS}"

    @property
    def reply(self) -> str:
        """The backend's answers to this kiosk's check-ins."""
        return f"{self.root}/{Leaf.REPLY}"

    @property
    def health(self) -> str:
        """Periodic health report, QoS 0."""
        return f"{self.root}/{Leaf.HEALTH}"

    @property
    def config_desired(self) -> str:
        """Staff's signed desired config (retained)."""
        return f"{self.root}/{Leaf.CONFIG_DESIRED}"

    @property
    def config_reported(self) -> str:
        """The config in force, secrets removed, and the last rejection (retained)."""
        return f"{self.root}/{Leaf.CONFIG_REPORTED}"

    @property
    def config_version(self) -> str:
        """Only the config in force's version and digest (retained): what a fleet summary
        needs, without the whole reported config (a few KiB per kiosk)."""
        return f"{self.root}/{Leaf.CONFIG_VERSION}"

    @property
    def enroll(self) -> str:
        """An unprovisioned kiosk's enrollment request (retained until it is enrolled)."""
        return f"{self.root}/{Leaf.ENROLL}"

    def command(self, name: str) -> str:
        """A signed staff command for this kiosk (never retained)."""
        return f"{self.root}/{_CMD}/{name}"

    def command_result(self, name: str) -> str:
        """This kiosk's answer to a command, group commands included."""
        return f"{self.root}/{_CMD}/{name}/{_RESULT}"

    @property
    def staff_subscriptions(self) -> list[str]:
        """What a kiosk subscribes to for staff: its own orders, its site's and the fleet's."""
        return [self.config_desired, self.command(ANY), command_topic(self.prefix, self.site),
                command_topic(self.prefix)]

    def staff_order(self, topic: str) -> tuple[str, str] | None:
        """``(kind, name)`` of a staff topic of this kiosk (``("cmd", "ping")``), else None."""
        if topic == self.config_desired:
            return "config", "config"
        for root in (self.root, f"{self.prefix}/{self.site}/{ALL}", f"{self.prefix}/{ALL}/{ALL}"):
            name = topic.removeprefix(f"{root}/{_CMD}/")
            if name != topic and name and "/" not in name:
                return ("enroll" if name == "enroll" else "cmd"), name
        return None


def command_topic(prefix: str, site: str = ALL, device_id: str = ALL, name: str = ANY) -> str:
    """A command topic: one kiosk's, a site's (``device_id`` ``_all``) or the fleet's."""
    return f"{prefix}/{site}/{device_id}/{_CMD}/{name}"


def every_kiosk(prefix: str, leaf: str) -> str:
    """The subscription staff use to hear ``leaf`` (``status``, ``config/reported`` …) of all."""
    return f"{Topics(prefix, ANY, ANY).root}/{leaf}"


STAFF_VIEW = (Leaf.STATUS, Leaf.STATE, Leaf.CONFIG_REPORTED, Leaf.CONFIG_VERSION,
              Leaf.CONFIG_DESIRED, Leaf.ENROLL, Leaf.HEALTH)
"""The leaves of every kiosk a staff tool follows, beside command results."""
SUMMARY_VIEW = (Leaf.STATUS, Leaf.STATE, Leaf.CONFIG_VERSION, Leaf.ENROLL, Leaf.HEALTH)
"""The leaves a fleet summary or list needs: all small (no reported or desired config)."""


def staff_view(prefix: str) -> list[str]:
    """What a staff tool subscribes to: every kiosk's retained messages, health reports and
    command results."""
    return [*(every_kiosk(prefix, leaf) for leaf in STAFF_VIEW),
            Topics(prefix, ANY, ANY).command_result(ANY), rollout_topic(prefix)]


def one_kiosk_view(prefix: str, device_id: str) -> list[str]:
    """Everything under one kiosk's root, at whatever site it is (``kioskctl show``)."""
    return [f"{Topics(prefix, ANY, device_id).root}/#"]


def summary_view(prefix: str) -> list[str]:
    """What a fleet summary subscribes to when no fleet service answers it."""
    return [every_kiosk(prefix, leaf) for leaf in SUMMARY_VIEW]


def fleet_service_view(prefix: str) -> list[str]:
    """What the fleet service hears: every kiosk's retained messages and results, every
    staff order (a kiosk's, a site's and the fleet's commands, desired configs), every
    rollout record, and the questions staff ask it."""
    every = Topics(prefix, ANY, ANY)
    return [*(every_kiosk(prefix, leaf) for leaf in STAFF_VIEW), every.command(ANY),
            every.command_result(ANY), rollout_topic(prefix), service_topic(prefix, ASK)]


FLEET = "_fleet"
"""The site level of staff's own records: ``<prefix>/_fleet/rollout/<id>``."""
ASK, ANSWER, SERVICE_STATUS = "ask", "answer", "status"
"""The fleet service's topics: questions to it, its answers, its retained presence."""


def rollout_topic(prefix: str, rollout_id: str = ANY) -> str:
    """Where a staged rollout's record is kept (retained), so any staff machine sees it."""
    return f"{prefix}/{FLEET}/rollout/{rollout_id}"


def service_topic(prefix: str, part: str, client: str = "") -> str:
    """``<prefix>/_fleet/service/<part>``: ``ask`` (staff's questions), ``status`` (retained
    ``online``/``offline``, also its last will), ``answer/<client>`` (each asker's answers)."""
    return f"{prefix}/{FLEET}/service/{part}" + (f"/{client}" if client else "")


def kiosk_of(topic: str) -> tuple[str, str] | None:
    """``(site, device_id)`` of a topic under a kiosk's root, else None."""
    parts = topic.split("/")
    if len(parts) < 4 or ALL in parts[1:3] or parts[1] == FLEET:  # staff's own records
        return None
    return parts[1], parts[2]


def leaf_of(topic: str) -> str | None:
    """What follows a kiosk's root in ``topic`` (``tele/health``, ``cmd/ping/result``), or None
    when the topic is not under a kiosk's root."""
    return None if kiosk_of(topic) is None else topic.split("/", 3)[3]


def is_command_result(topic: str) -> bool:
    """True for ``<prefix>/<site>/<device_id>/cmd/<name>/result``: a kiosk's answer to a command."""
    parts = topic.split("/")
    return len(parts) == 6 and parts[3] == _CMD and parts[5] == _RESULT


def is_command(topic: str) -> bool:
    """True for a staff command on a kiosk's, a site's or the fleet's ``cmd/<name>``."""
    parts = topic.split("/")
    return len(parts) == 5 and parts[3] == _CMD


def checkins_of_all_kiosks(prefix: str) -> str:
    """The subscription a backend uses to hear every kiosk of every site, one check-in a
    message."""
    return every_kiosk(prefix, Leaf.CHECKIN)


def checkin_batches_of_all_kiosks(prefix: str) -> str:
    """The subscription a backend that takes batches adds: every kiosk's ``evt/checkins``."""
    return every_kiosk(prefix, Leaf.CHECKINS)


def reply_topic_for(checkin_topic: str) -> str:
    """Where the backend answers a check-in (or a batch) that arrived on ``checkin_topic``."""
    return f"{_checkin_root(checkin_topic)}/{Leaf.REPLY}"


def device_of(checkin_topic: str) -> str:
    """The kiosk whose topic a check-in came on: the only one the broker lets write there."""
    return _checkin_root(checkin_topic).rsplit("/", 1)[-1]


def is_batch(checkin_topic: str) -> bool:
    """True for a kiosk's ``evt/checkins``: the message is a batch (:func:`decode_checkins`)."""
    return checkin_topic.endswith(f"/{Leaf.CHECKINS}")


def _checkin_root(checkin_topic: str) -> str:
    for leaf in (Leaf.CHECKIN, Leaf.CHECKINS):
        root = checkin_topic.removesuffix(f"/{leaf}")
        if root != checkin_topic:
            return root
    raise ProtocolError(f"not a check-in topic: {checkin_topic}")


# --- check-in ---------------------------------------------------------------


def encode_checkin(checkin: CheckIn) -> bytes:
    """The check-in as stored in the outbox and sent: compact JSON, fields in fixed order."""
    body = {"v": VERSION, **_flat(checkin)}
    return _dump(body)


def mark_replayed(payload: bytes) -> bytes:
    """The stored payload with ``"replayed":true`` added: sent later than it was scanned."""
    return payload[:-1] + b',"replayed":true}'


def encode_checkins(payloads: list[bytes]) -> bytes:
    """Check-ins (each as :func:`encode_checkin` or :func:`mark_replayed` made it) in one
    message for ``evt/checkins``: ``{"v":1,"checkins":[...]}``. At most
    :data:`MAX_CHECKINS` that fit :data:`CHECKIN_BATCH_LIMITS` (:func:`pack` says how many)."""
    return b'{"v":%d,"checkins":[' % VERSION + b",".join(payloads) + b"]}"


def pack(sizes: list[int], max_items: int, max_bytes: int) -> int:
    """How many of the items whose encoded sizes are ``sizes`` (from the first) go in one
    batch message of at most ``max_items`` items and ``max_bytes`` bytes (at least one:
    a single item goes as it is, in a message of its own)."""
    count, total = 0, _BATCH_ROOM
    for size in sizes:
        total += size + 1
        if count == max_items or (count and total > max_bytes):
            break
        count += 1
    return max(1, count)


_BATCH_ROOM = 64
"""Bytes a batch message takes beyond its items: the envelope, with room to spare."""
PACKET_ROOM = 512
"""Bytes an MQTT PUBLISH takes beyond its payload, with room to spare: the fixed header, the
topic (a kiosk's has three levels of at most 64 characters, and its leaf), the packet id and
properties."""


def batch_bytes(limits: Limits, max_packet: int | None) -> int:
    """The bytes a batch may take on a broker that announced ``max_packet`` (MQTT 5 CONNACK
    Maximum Packet Size; None: none announced): the protocol's limit, or less. mosquitto
    disconnects a client that sends a larger packet, it does not refuse it in a PUBACK."""
    if max_packet is None:
        return limits.max_bytes
    return max(1, min(limits.max_bytes, max_packet - PACKET_ROOM))


@dataclass(frozen=True)
class Unreadable:
    """A check-in of a batch that does not decode: its ``event_id`` if it has a readable one,
    so the backend can refuse it by name (None: nothing to answer), and why."""

    event_id: str | None
    reason: str
    payload: bytes
    """The entry as JSON again, for the backend's record of what it refused."""


def decode_checkin(payload: bytes | bytearray) -> tuple[CheckIn, bool]:
    """Parse a check-in (backend side); returns it and whether it was replayed."""
    return _checkin(decode_object(payload, CHECKIN_LIMITS))


def decode_checkins(payload: bytes | bytearray) -> list[tuple[CheckIn, bool] | Unreadable]:
    """Parse a batch from ``evt/checkins`` (backend side): each check-in and whether it was
    replayed, in the order sent. An entry that is not a valid check-in is refused alone;
    a batch that breaks the batch's own limits (not JSON, a duplicate key, an over-long
    string, a number out of range, too deep, too many entries) raises, whole."""
    decoded: list[tuple[CheckIn, bool] | Unreadable] = []
    body = decode_object(payload, CHECKIN_BATCH_LIMITS)
    for entry in _entries(body, "checkins", MAX_CHECKINS):
        try:
            if not isinstance(entry, dict):
                raise ProtocolError("a check-in is not an object")
            if entry.get("v") != VERSION:
                raise ProtocolError(f"unsupported schema version {_shown(entry.get('v'))}")
            decoded.append(_checkin(Fields(entry)))
        except ProtocolError as exc:
            decoded.append(Unreadable(_event_id_in(entry), str(exc), json.dumps(entry).encode()))
    return decoded


def _event_id_in(entry: Any) -> str | None:
    """The ``event_id`` of a batch's entry that did not decode, read within its limits."""
    try:
        return Fields(entry).text("event_id", MAX_ID) if isinstance(entry, dict) else None
    except ProtocolError:
        return None


def _checkin(body: Fields) -> tuple[CheckIn, bool]:
    checkin = CheckIn(
        event_id=body.text("event_id", MAX_ID), device_id=body.text("device_id", MAX_ID),
        boot_id=body.text("boot_id", MAX_ID), seq=body.integer("seq", 0, MAX_SEQ),
        captured_at=body.number("captured_at", 0, MAX_TIME),
        member_id=body.text("member_id", MAX_MEMBER_ID), source=body.text("source", MAX_LABEL),
    )
    return checkin, body.flag("replayed", False)


def _entries(body: Fields, field: str, max_items: int) -> list[Any]:
    """The list ``field`` of a decoded batch message, of 1 to ``max_items`` (an empty batch
    says nothing, and is refused as malformed)."""
    entries = body.body.get(field)
    if not isinstance(entries, list) or not 1 <= len(entries) <= max_items:
        raise ProtocolError(f"field {field!r} is not a list of 1 to {max_items}")
    return entries


# --- reply ------------------------------------------------------------------


class Ack(StrEnum):
    """The backend's acknowledgement of a check-in, sent only after its commit: each one is
    final, so the kiosk deletes the row (README "Delivery ends at the ledger")."""

    CREDITED = "credited"
    """Recorded now, points given."""
    DUPLICATE = "duplicate"
    """Recorded before (the kiosk sent it again): nothing changes."""
    REFUSED = "refused"
    """Never creditable, for the ``reason`` given (malformed, another kiosk's name...)."""


@dataclass(frozen=True)
class Answer:
    """A decoded reply: the acknowledgement of one check-in and, unless it was refused, the
    member's standing for the screen."""

    event_id: str
    member_id: str
    status: MemberStatus | None
    """None for a refusal."""
    ack: Ack | None
    """None: a backend that answers without acknowledging (the row is never deleted)."""
    reason: str = ""
    batches: bool = False
    """The backend takes batches of check-ins on ``evt/checkins`` (it says so in its answers:
    the kiosk sends batches only to a backend that has)."""


def encode_reply(event_id: str, member_id: str, status: MemberStatus, ack: Ack,
                 batches: bool = False) -> bytes:
    """The backend's answer to one check-in it has committed (``ack`` says how); ``batches``:
    it takes batches of check-ins on ``evt/checkins`` (``"batches":true``)."""
    body = {"v": VERSION, "event_id": event_id, "member_id": member_id, **_flat(status),
            "ack": ack.value, **_BATCHES[batches]}
    return _dump(body)


def encode_refusal(event_id: str, member_id: str, reason: str, batches: bool = False) -> bytes:
    """The backend's answer to a check-in it will never credit, and why (a refusal is final:
    the kiosk deletes the row, logs the reason and counts it). ``member_id`` is what the
    check-in named (:func:`member_of`); ``batches`` as for :func:`encode_reply`."""
    return _dump({"v": VERSION, "event_id": event_id, "member_id": member_id,
                  "ack": Ack.REFUSED.value, "reason": reason[:MAX_REASON], **_BATCHES[batches]})


_BATCHES: dict[bool, dict[str, bool]] = {True: {"batches": True}, False: {}}
"""The field an answer carries when its backend takes batches (none when it does not)."""


def member_of(payload: bytes | bytearray) -> str:
    """The ``member_id`` a stored or received check-in names ("" when it names none that fits
    a reply): an acknowledgement must repeat it, so knowing an ``event_id`` alone is not
    enough to make a kiosk delete a check-in."""
    try:
        member = json.loads(payload).get("member_id")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return member if isinstance(member, str) and len(member) <= MAX_MEMBER_ID else ""


def event_id_of(payload: bytes | bytearray) -> str | None:
    """The ``event_id`` of a check-in that failed to decode, if it has a readable one: the
    backend refuses such a check-in by name, so the kiosk stops sending it."""
    try:
        return decode_object(payload, CHECKIN_LIMITS).text("event_id", MAX_ID)
    except ProtocolError:
        return None


def decode_reply(payload: bytes | bytearray) -> Answer:
    """Parse one reply, every field within its limits."""
    return _answer(decode_object(payload, REPLY_LIMITS))


def encode_replies(answers: list[bytes], max_bytes: int = REPLY_BATCH_LIMITS.max_bytes
                   ) -> list[bytes]:
    """Answers to one kiosk (each from :func:`encode_reply` or :func:`encode_refusal`) packed
    into as few messages as fit ``max_bytes`` (:data:`REPLY_BATCH_LIMITS`, or less on a broker
    that allows less: :func:`batch_bytes`): a backend answering a drained backlog sends one
    message per batch, not one per check-in (a single answer goes as it is)."""
    messages: list[bytes] = []
    sizes = [len(answer) for answer in answers]
    first = 0
    while first < len(answers):
        count = pack(sizes[first:], MAX_ANSWERS, max_bytes)
        messages.append(_batch(answers[first:first + count]))
        first += count
    return messages


def _batch(answers: list[bytes]) -> bytes:
    if len(answers) == 1:
        return answers[0]
    return b'{"v":%d,"answers":[' % VERSION + b",".join(answers) + b"]}"


def decode_replies(payload: bytes | bytearray) -> tuple[list[Answer], list[str]]:
    """Parse a reply message: one answer, or a batch of them (``{"v":1,"answers":[...]}``).
    Returns the answers that decode and why each of the others was refused (one bad answer
    does not take its batch with it)."""
    if len(payload) <= REPLY_LIMITS.max_bytes and b'"answers"' not in payload:
        return [decode_reply(payload)], []  # one answer, within a single reply's limits
    body = decode_object(payload, REPLY_BATCH_LIMITS)
    if "answers" not in body.body:  # "answers" was only a value: one answer after all
        return [decode_reply(payload)], []
    entries = _entries(body, "answers", MAX_ANSWERS)
    answers: list[Answer] = []
    refused: list[str] = []
    for entry in entries:
        try:
            if not isinstance(entry, dict):
                raise ProtocolError("an answer is not an object")
            answers.append(_answer(Fields(entry)))
        except ProtocolError as exc:
            refused.append(str(exc))
    return answers, refused


def _answer(body: Fields) -> Answer:
    event_id = body.text("event_id", MAX_ID)
    word = body.text("ack", MAX_LABEL, "")
    try:
        ack = Ack(word) if word else None
    except ValueError:
        raise ProtocolError(f"field 'ack' is not one of {[a.value for a in Ack]}") from None
    member_id = body.text("member_id", MAX_MEMBER_ID)
    batches = body.flag("batches", False)
    if ack is Ack.REFUSED:
        return Answer(event_id, member_id, None, ack, body.text("reason", MAX_REASON, ""),
                      batches)
    status = MemberStatus(
        display_name=body.text("display_name", MAX_NAME),
        balance=body.integer("balance", 0, MAX_POINTS),
        tier=body.text("tier", MAX_LABEL),
        points_to_next=body.integer("points_to_next", 0, MAX_POINTS),
        progress=body.number("progress", 0.0, 1.0),
        reward_unlocked=body.text("reward_unlocked", MAX_LABEL, ""),
        next_reward=body.text("next_reward", MAX_LABEL, ""),
        points_earned=body.integer("points_earned", 0, MAX_POINTS, 0),
        tier_changed=body.flag("tier_changed", False),
        badge=body.text("badge", MAX_LABEL, ""),
    )
    return Answer(event_id, member_id, status, ack, batches=batches)


# --- state ------------------------------------------------------------------


def encode_state(state: str, reason: str, firmware: str,
                 release: dict[str, Any] | None = None) -> bytes:
    """Retained lifecycle state: ``init|ready|degraded|offline`` and why; ``release``: the
    running release, the one on trial and the last that failed (docs/updates.md)."""
    body: dict[str, Any] = {"v": VERSION, "state": state, "reason": reason, "firmware": firmware}
    if release is not None:
        body["release"] = release
    return _dump(body)


def decode_release(payload: bytes | bytearray) -> dict[str, Any] | None:
    """The ``release`` of a retained state, bounded (None: the kiosk reports none):
    ``{"running": str, "trying": str | None, "last_failure": {"version", "reason"} | None}``."""
    body = decode_object(payload, STATE_LIMITS)
    release = body.body.get("release")
    if release is None:
        return None
    if not isinstance(release, dict):
        raise ProtocolError("field 'release' is not an object")
    fields = Fields(release)
    failure = release.get("last_failure")
    if failure is not None:
        if not isinstance(failure, dict):
            raise ProtocolError("field 'release.last_failure' is not an object")
        failure = {"version": Fields(failure).text("version", MAX_LABEL),
                   "reason": Fields(failure).text("reason", MAX_REASON)}
    trying = release.get("trying")
    return {"running": fields.text("running", MAX_LABEL),
            "trying": None if trying is None else fields.text("trying", MAX_LABEL),
            "last_failure": failure}


def decode_state(payload: bytes | bytearray) -> tuple[str, str]:
    """Parse a retained state into ``(state, reason)``, as ``kiosk status`` reads it."""
    body = decode_object(payload, STATE_LIMITS)
    return body.text("state", MAX_LABEL), body.text("reason", MAX_REASON, "")


# --- staff: command results, reported config, enrollment requests --------------


def encode_result(cmd_id: str, ok: bool, error: str = "",
                  data: dict[str, Any] | None = None) -> bytes:
    """A kiosk's answer to a command: ``status`` ``ok`` or ``error`` and why."""
    body = {"v": VERSION, "cmd_id": cmd_id, "status": "ok" if ok else "error",
            "error": error, "data": data or {}}
    return _dump(body)


def decode_result(payload: bytes | bytearray) -> dict[str, Any]:
    """Parse a command result (staff side)."""
    body = decode_object(payload, STAFF_VIEW_LIMITS)
    body.text("cmd_id", MAX_ID)
    body.text("status", 8)
    body.text("error", MAX_REASON)
    _table(body, "data")
    return body.body


def encode_reported(version: int, cmd_id: str, config: dict[str, Any],
                    rejected: dict[str, Any] | None) -> bytes:
    """The config in force (``version`` 0: the local file alone) and the last rejection."""
    body = {"v": VERSION, "version": version, "cmd_id": cmd_id, "config": config,
            "rejected": rejected}
    return _dump(body)


def decode_reported(payload: bytes | bytearray) -> dict[str, Any]:
    """Parse a reported config (staff side)."""
    body = decode_object(payload, STAFF_VIEW_LIMITS)
    body.integer("version", 0, MAX_SEQ)
    body.text("cmd_id", MAX_ID)
    _table(body, "config")
    if body.body.get("rejected") is not None:
        _table(body, "rejected")
    return body.body


def encode_enroll_request(device_id: str, site: str, firmware: str) -> bytes:
    """An unprovisioned kiosk asking to be enrolled (the pairing code is only on its screen)."""
    return _dump({"v": VERSION, "device_id": device_id, "site": site, "firmware": firmware})


def encode_config_version(version: int, digest: str) -> bytes:
    """The config in force's version and a digest of it (retained on ``config/version``)."""
    return _dump({"v": VERSION, "version": version, "digest": digest})


def decode_enroll_request(payload: bytes | bytearray) -> dict[str, Any]:
    """Parse an enrollment request (staff side)."""
    body = decode_object(payload, STAFF_VIEW_LIMITS)
    for name in ("device_id", "site", "firmware"):
        body.text(name, MAX_ID)
    return body.body


def _table(body: Fields, name: str) -> dict[str, Any]:
    value = body.body.get(name)
    if not isinstance(value, dict):
        raise ProtocolError(f"field {name!r} is missing or not an object")
    return value


# --- health -----------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """What staff see of a running kiosk, every ``telemetry.interval_s``."""

    uptime_s: float
    state: str
    problems: list[str]
    outbox_depth: int
    outbox_oldest_s: float
    unsent: int
    """Check-ins in the outbox not sent yet (by this run), and the oldest one's age."""
    unsent_oldest_s: float
    awaiting_backend: int
    """Check-ins sent and not yet acknowledged by the backend, and the oldest one's age."""
    awaiting_oldest_s: float
    backend_silent_s: float
    """How long the backend has left sent check-ins unacknowledged (0: it keeps up)."""
    scans: int
    checkins: int
    visits_refused: int
    scans_lost: int
    published: int
    """Check-ins the broker took (PUBACK): only a free slot in the publish window."""
    delivered: int
    """Check-ins the backend acknowledged (credited or duplicate): deleted from the outbox."""
    backend_refused: int
    """Check-ins the backend refused for good (deleted, the reason logged)."""
    resent: int
    """Check-ins sent again because the backend did not acknowledge them in time."""
    refused: int
    """Sends the broker refused or gave to no subscriber (offered again)."""
    decode_fps: float
    connects: int
    bad_messages: int
    replies_refused: int
    codes_refused: int
    log_lines_held_back: int
    events_dropped: int
    link_drops: int
    cpu_temp_c: float | None
    checkins_today: int = 0
    """Check-ins recorded since local midnight (kept in the database across restarts)."""
    last_scan_at: float | None = None
    """Unix time of the last code a reader handed up, member code or not."""
    batches_unrouted: int = 0
    """Batches of check-ins the broker gave to nobody or refused (sent again one a message): a
    backend that takes no batches, or an ACL written before them."""


def encode_health(health: Health, sent_at: float) -> bytes:
    """The health report as sent; ``sent_at`` (Unix seconds) is when, for "last seen"."""
    body = {"v": VERSION, **_flat(health), "sent_at": round(sent_at, 3)}
    return _dump(body)


@dataclass(frozen=True)
class Waiting:
    """What a health report says waits for delivery: check-ins not sent yet, and those sent
    that the backend has not acknowledged (``kiosk status`` and staff tools show both)."""

    unsent: int
    unsent_oldest_s: float
    awaiting_backend: int
    awaiting_oldest_s: float
    sent_at: float
    """When the report was sent (the kiosk's clock)."""


def decode_waiting(payload: bytes | bytearray) -> Waiting:
    """The delivery figures of a retained health report (staff side)."""
    body = decode_object(payload, STAFF_VIEW_LIMITS)
    return Waiting(
        unsent=body.integer("unsent", 0, MAX_SEQ), unsent_oldest_s=body.number(
            "unsent_oldest_s", 0, MAX_TIME), awaiting_backend=body.integer(
            "awaiting_backend", 0, MAX_SEQ), awaiting_oldest_s=body.number(
            "awaiting_oldest_s", 0, MAX_TIME), sent_at=body.number("sent_at", 0, MAX_TIME))


# --- Home Assistant MQTT discovery -------------------------------------------
# Home Assistant's own topics (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
# ``<discovery prefix>/<component>/<node id>/<object id>/config`` for each entity, and the
# prefix's ``status``, where Home Assistant says ``online`` when it (re)starts.

HASS_PREFIX = "homeassistant"
"""Home Assistant's default discovery prefix."""
HASS_NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What Home Assistant accepts as a node id or object id in a discovery topic (no dots)."""


def hass_status_topic(discovery_prefix: str) -> str:
    """Where Home Assistant publishes its birth (``online``) and last will (``offline``)."""
    return f"{discovery_prefix}/status"


def hass_config_topic(discovery_prefix: str, component: str, node_id: str,
                      object_id: str) -> str:
    """The retained discovery config of one entity (empty payload: the entity is removed)."""
    return f"{discovery_prefix}/{component}/{node_id}/{object_id}/config"


# --- helpers ----------------------------------------------------------------


def decode_object(payload: bytes | bytearray, limits: Limits) -> Fields:
    """The first step for every payload that comes in: a bounded JSON object of our version.

    Raises :class:`ProtocolError` (count it, drop the message) for anything else.
    """
    body = load_object(payload, limits)
    version = body.get("v")
    if type(version) is not int or version != VERSION:
        raise ProtocolError(f"unsupported schema version {_shown(version)} (expected {VERSION})")
    return Fields(body)


def _flat(record: Any) -> dict[str, Any]:
    """A flat dataclass's fields in order, to be unpacked into a new body (never changed):
    ``dataclasses.asdict`` deep-copies every value, which was a third of the backend's time
    per check-in and is not needed for flat ones."""
    fields: dict[str, Any] = vars(record)
    return fields


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""Made once: ``json.dumps`` with separators builds a new encoder on every call."""


def _dump(body: dict[str, Any]) -> bytes:
    """Compact JSON, fields in the order given: what every payload looks like on the wire."""
    return _COMPACT.encode(body).encode()


def _shown(value: Any) -> str:
    """``value`` as an error message shows it: its repr, cut to 40 characters, so a reason
    that repeats it still fits a refusal."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
