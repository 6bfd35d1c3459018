"""Staff's MQTT client: sends sealed orders and collects what kiosks say.

It subscribes to every kiosk's retained ``status``, ``state``, ``config/reported``
and ``enroll``, to ``tele/health`` and to command results, and keeps the newest
message per topic. Used by ``kioskctl`` and by tests.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk import KioskError
from kiosk.mqtt import protocol
from kiosk.mqtt.client import connect_now, make_client
from kiosk.mqtt.settings import MqttSettings


def kiosks_of(latest: Mapping[str, bytes], prefix: str) -> dict[tuple[str, str],
                                                                 dict[str, bytes]]:
    """Every kiosk in ``latest`` (topic -> newest payload), ``(site, device_id)`` ->
    ``{leaf: payload}``."""
    found: dict[tuple[str, str], dict[str, bytes]] = {}
    for topic, payload in latest.items():
        where, leaf = protocol.kiosk_of(topic), protocol.leaf_of(topic)
        if where is None or leaf is None or not topic.startswith(f"{prefix}/") or not payload:
            continue
        found.setdefault(where, {})[leaf] = payload
    return found


class StaffClientError(KioskError):
    """The broker could not be reached or refused us."""


class StaffClient:
    """One connection to the broker; thread-safe reads of what has arrived."""

    def __init__(self, broker: MqttSettings, view: list[str] | None = None) -> None:
        """``broker``: the same settings as a kiosk's ``[mqtt]`` (kioskctl reads them from its
        own config file). ``view``: what to subscribe to (default: everything staff follow,
        :func:`protocol.staff_view`); the fleet service's presence and this client's answers
        from it are always heard."""
        self.broker = broker
        self.client_id = f"kioskctl-{uuid.uuid4().hex[:10]}"
        prefix = broker.topic_prefix
        self._view = [*(protocol.staff_view(prefix) if view is None else view),
                      protocol.service_topic(prefix, protocol.SERVICE_STATUS),
                      protocol.service_topic(prefix, protocol.ANSWER, self.client_id)]
        self._lock = threading.Condition()
        self.latest: dict[str, bytes] = {}
        """The newest payload per topic (retained ones included)."""
        self.seen_at: dict[str, float] = {}
        self.updated: dict[str, int] = {}
        """Per topic, the value of ``received`` when its newest message came."""
        self.results: list[tuple[str, dict[str, Any]]] = []
        """Every command result heard: ``(topic, body)``."""
        self._last_result: dict[tuple[str, str, str], dict[str, Any]] = {}
        """The last result per ``cmd_id``: a rollout of 10,000 orders looks each one up."""
        self.received = 0
        self.on_message: Callable[[str, bytes], None] | None = None
        self._connected = threading.Event()
        """Set once subscribed (or refused): results cannot be missed after that."""
        self._client = make_client(broker, self.client_id,
                                   on_connect=self._on_connect, on_message=self._on_message,
                                   on_subscribe=lambda *_args: self._connected.set())
        self._refused = ""

    def connect(self, timeout: float = 10.0) -> StaffClient:
        """Connect, subscribe, and wait for the broker's answer."""
        try:
            connect_now(self._client)
        except (OSError, ValueError) as exc:
            raise StaffClientError(f"cannot reach the broker at {self.broker.host}:"
                                   f"{self.broker.port}: {exc}") from None
        if not self._connected.wait(timeout) or self._refused:
            self.close()
            raise StaffClientError(f"broker did not accept us: {self._refused or 'no answer'}")
        return self

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()

    def send(self, topic: str, payload: bytes, retain: bool = False,
             timeout: float = 10.0) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise StaffClientError(f"the broker did not acknowledge {topic}")

    def send_all(self, messages: list[tuple[str, bytes]], retain: bool = False,
                 timeout: float = 60.0, expiry_s: float = 0.0) -> None:
        """Publish many at QoS 1, then wait for every PUBACK: one round trip for a fleet,
        not one per kiosk (paho keeps them in flight, queued beyond its window).

        ``expiry_s`` > 0: the broker drops a message still queued for an offline kiosk's
        session after that long (MQTT 5 message expiry; the order's own ``expires_at``
        says the same to the kiosk, on every protocol version)."""
        properties = None
        if expiry_s > 0 and self.broker.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = math.ceil(expiry_s)
        sent = [(topic, self._client.publish(topic, payload, qos=1, retain=retain,
                                             properties=properties))
                for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for topic, info in sent:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise StaffClientError(f"the broker did not acknowledge {topic}")

    def watch(self, topics: Mapping[str, str | tuple[str, ...]], answered: Callable[[str], bool],
              timeout: float, progress: Callable[[int], None] = lambda _done: None) -> set[str]:
        """Wait until ``answered(key)`` for every key of ``topics`` (key -> the topic, or
        topics, that answer it); a key is checked again only when one of its topics has a new
        message, so a fleet of 10,000 is not re-read at every message. The keys still
        unanswered."""
        watched = {key: (value,) if isinstance(value, str) else value
                   for key, value in topics.items()}
        mark, deadline = self.received, time.monotonic() + timeout  # before the first look
        waiting = {key for key in topics if not answered(key)}
        progress(len(topics) - len(waiting))
        while waiting and time.monotonic() < deadline:
            self.wait(self._newer_than(mark), min(1.0, max(0.0, deadline - time.monotonic())))
            with self._lock:
                now, changed = self.received, {key for key in waiting if any(
                    self.updated.get(topic, 0) > mark for topic in watched[key])}
            mark = now
            done = {key for key in changed if answered(key)}
            if done:
                waiting -= done
                progress(len(topics) - len(waiting))
        return waiting

    def _newer_than(self, mark: int) -> Callable[[], bool]:
        return lambda: self.received > mark

    def wait(self, condition: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``condition()`` (called under the lock) is truthy; its value, or None."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = condition()
                left = deadline - time.monotonic()
                if value or left <= 0:
                    return value
                self._lock.wait(min(left, 0.5))

    def settle(self, quiet_s: float = 0.3, limit_s: float = 60.0) -> bool:
        """Wait until the retained messages have arrived: nothing new for ``quiet_s``. False
        when they still flow after ``limit_s``: what was heard may be part of the fleet."""
        deadline = time.monotonic() + limit_s
        seen = -1
        while seen != self.received:
            if time.monotonic() >= deadline:
                return False
            seen = self.received
            time.sleep(quiet_s)
        return True

    def results_for(self, cmd_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The results heard so far for one order."""
        return [(topic, body) for topic, body in self.results if body.get("cmd_id") == cmd_id]

    def result_of(self, cmd_id: str, site: str, device_id: str) -> dict[str, Any] | None:
        """The last result one kiosk gave to an order sent to it (a rollout's), looked up
        without reading every result heard. Only its own topic counts: any kiosk may write
        its results, and a rollout's order ids can be worked out from kiosk names."""
        with self._lock:
            return self._last_result.get((site, device_id, cmd_id))

    def kiosks(self) -> dict[tuple[str, str], dict[str, bytes]]:
        """Every kiosk heard of, ``(site, device_id)`` -> ``{leaf: payload}``."""
        with self._lock:
            return kiosks_of(self.latest, self.broker.topic_prefix)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any,
                    reason_code: Any, _properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._connected.set()
        else:
            client.subscribe([(topic, 1) for topic in self._view])

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        with self._lock:
            self.latest[message.topic] = payload
            self.received += 1
            self.updated[message.topic] = self.received
            self.seen_at[message.topic] = time.time()
            if protocol.is_command_result(message.topic):
                # a result that is not one is not ours to judge: kioskctl shows what it can read
                with contextlib.suppress(protocol.ProtocolError):
                    body = protocol.decode_result(payload)
                    self.results.append((message.topic, body))
                    _prefix, site, device_id, *_rest = message.topic.split("/")
                    self._last_result[(site, device_id, body["cmd_id"])] = body
            if self.on_message is not None:  # before waiters wake: they may wait on it
                self.on_message(message.topic, payload)
            self._lock.notify_all()
