"""Asking the fleet service over MQTT: a question on ``<prefix>/_fleet/service/ask``, the
answer on the asker's own ``<prefix>/_fleet/service/answer/<client id>``.

MQTT rather than an HTTP API: staff reach the broker already, with their certificate, and
the broker's ACL decides who may ask (staff) and who may answer (the fleet service), so
there is no second door, port or credential to secure. Request and response work on
MQTT 3.1.1 too: the asker names itself in the question (not MQTT 5's response topic).

Question: ``{"v":1,"id":"…","client":"<client id>","q":"summary|list|show|audit|results",
"args":{…}}``. Answer: one or more ``{"v":1,"id":"…","part":i,"parts":n,"chunk":"…"}``
whose chunks, joined, are the JSON answer (a list of 10,000 kiosks does not fit in one
message under the broker's 64 KiB packet limit). The service's retained ``status``
(``online``, or ``offline`` — its last will too) says whether to ask at all.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

from kiosk import KioskError
from kiosk.mqtt import protocol
from kiosk.mqtt.wire import Limits
from kiosk.staff.client import StaffClient

CHUNK = 40_000
"""Characters of answer per message: well under the broker's 64 KiB packet limit."""
ASK_TIMEOUT_S = 10.0
QUESTION_LIMITS = Limits(max_bytes=4096, max_depth=3, max_string=256)
ANSWER_LIMITS = Limits(max_bytes=60_000, max_depth=2, max_string=CHUNK)
QUESTIONS = ("summary", "list", "show", "audit", "results")


class NoService(KioskError):
    """No fleet service answers (none online, or it did not answer in time)."""


def question(client_id: str, name: str, args: dict[str, Any]) -> tuple[str, bytes]:
    """A question's id and payload."""
    ask_id = uuid.uuid4().hex[:12]
    return ask_id, json.dumps({"v": protocol.VERSION, "id": ask_id, "client": client_id,
                               "q": name, "args": args}).encode()


def answer_parts(ask_id: str, body: Any) -> list[bytes]:
    """An answer as the messages that carry it."""
    text = json.dumps(body, separators=(",", ":"))
    parts = max(1, math.ceil(len(text) / CHUNK))
    return [json.dumps({"v": protocol.VERSION, "id": ask_id, "part": index, "parts": parts,
                        "chunk": text[index * CHUNK:(index + 1) * CHUNK]}).encode()
            for index in range(parts)]


def service_online(client: StaffClient, wait_s: float = 0.5) -> bool:
    """True when the fleet service says it is online (its retained status)."""
    topic = protocol.service_topic(client.broker.topic_prefix, protocol.SERVICE_STATUS)
    status = client.wait(lambda: client.latest.get(topic), wait_s)
    return status == protocol.ONLINE


def ask(client: StaffClient, name: str, args: dict[str, Any] | None = None,
        timeout: float = ASK_TIMEOUT_S) -> Any:
    """Ask the fleet service; its answer, or :class:`NoService`."""
    if not service_online(client):
        raise NoService("no fleet service is online")
    prefix = client.broker.topic_prefix
    ask_id, payload = question(client.client_id, name, args or {})
    parts: dict[int, str] = {}
    expected: list[int] = []

    def heard(topic: str, message: bytes) -> None:  # on paho's thread: never raises
        try:
            body = protocol.decode_object(message, ANSWER_LIMITS).body
        except protocol.ProtocolError:
            return
        if body.get("id") == ask_id and isinstance(body.get("part"), int):
            parts[body["part"]] = str(body.get("chunk", ""))
            expected[:] = [int(body.get("parts", 1))]

    answers = protocol.service_topic(prefix, protocol.ANSWER, client.client_id)
    before = client.on_message
    client.on_message = lambda topic, message: (heard(topic, message) if topic == answers
                                                else before(topic, message) if before else None)
    try:
        client.send(protocol.service_topic(prefix, protocol.ASK), payload)
        done = client.wait(lambda: expected and len(parts) >= expected[0], timeout)
    finally:
        client.on_message = before
    if not done:
        raise NoService(f"the fleet service did not answer in {timeout:g} s")
    return json.loads("".join(parts[index] for index in range(expected[0])))


class ServiceResults:
    """``heard(cmd_id)`` for :class:`~kiosk.staff.rollout.Rollouts`: the results of a
    rollout's commands the fleet service heard (a kiosk that ran its order after this staff
    machine stopped listening), asked for at most every ``fresh_s`` per rollout."""

    def __init__(self, client: StaffClient, fresh_s: float = 2.0) -> None:
        self._client = client
        self._online = service_online(client, wait_s=0.0)  # the client has settled already
        self._fresh_s = fresh_s
        self._known: dict[str, tuple[float, dict[str, Any]]] = {}

    def __call__(self, cmd_id: str) -> dict[str, Any] | None:
        if not self._online:
            return None
        rollout = cmd_id.rpartition(".")[0]
        asked_at, results = self._known.get(rollout, (0.0, {}))
        if time.monotonic() - asked_at > self._fresh_s:
            try:
                results = ask(self._client, "results", {"rollout": rollout})["results"]
            except NoService:
                results = {}
            self._known[rollout] = (time.monotonic(), results)
        found = results.get(cmd_id)
        return found if isinstance(found, dict) else None
