"""A kiosk's delivery without the rest of the kiosk, for backend tests that need many kiosks
(or a stolen kiosk certificate) and no screens: check-ins published QoS 1 on the kiosk's
own topic, sent again while unacknowledged, every acknowledgement kept."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.mqtt import protocol


class Sender:
    """One kiosk's check-ins, sent at least once until the backend acknowledges each."""

    def __init__(self, host: str, port: int, device_id: str, site: str = "shop",
                 prefix: str = "loyalty") -> None:
        self.device_id = device_id
        self.topics = protocol.Topics(prefix, site, device_id)
        self.acks: dict[str, list[str]] = {}
        """event_id -> every ack word heard for it (a check-in sent twice may get two)."""
        self.statuses: dict[str, protocol.MemberStatus] = {}
        self._sent: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sender-{device_id}",
                                   protocol=mqtt.MQTTv5)
        self._client.max_inflight_messages_set(100)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_connect = lambda c, *_: c.subscribe(self.topics.reply, qos=1)
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect(host, port)
        self._client.loop_start()
        # Answers to check-ins sent before the SUBACK would go to nobody (a first visit
        # then comes back "duplicate" when sent again).
        if not subscribed.wait(10):
            raise TimeoutError(f"{device_id} did not subscribe to its replies")

    def check_in(self, member_id: str) -> CheckIn:
        """Publish one new check-in of ``member_id``."""
        self._seq += 1
        checkin = CheckIn(uuid7(), self.device_id, "boot-1", self._seq, time.time(), member_id,
                          "camera")
        payload = protocol.encode_checkin(checkin)
        with self._lock:
            self._sent[checkin.event_id] = (payload, time.monotonic())
        self._client.publish(self.topics.checkin, payload, qos=1)
        return checkin

    def resend_unacknowledged(self, older_than_s: float) -> int:
        """Send again what waits for an acknowledgement longer than ``older_than_s``."""
        now = time.monotonic()
        with self._lock:
            due = [(e, p) for e, (p, at) in self._sent.items()
                   if e not in self.acks and now - at > older_than_s]
            for event_id, payload in due:
                self._sent[event_id] = (payload, now)
        for _, payload in due:
            self._client.publish(self.topics.checkin, protocol.mark_replayed(payload), qos=1)
        return len(due)

    def unacknowledged(self) -> int:
        with self._lock:
            return sum(e not in self.acks for e in self._sent)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        answers, _refused = protocol.decode_replies(message.payload)  # one, or a batch
        with self._lock:
            for answer in answers:
                self.acks.setdefault(answer.event_id, []).append(str(answer.ack))
                if answer.status is not None:
                    self.statuses[answer.event_id] = answer.status

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def deliver_all(senders: list[Sender], timeout: float, resend_s: float = 3.0) -> None:
    """Resend until every check-in of every sender is acknowledged (as the outbox does)."""
    deadline = time.monotonic() + timeout
    while any(s.unacknowledged() for s in senders):
        if time.monotonic() > deadline:
            left = sum(s.unacknowledged() for s in senders)
            raise TimeoutError(f"{left} check-ins still unacknowledged after {timeout} s")
        for sender in senders:
            sender.resend_unacknowledged(resend_s)
        time.sleep(0.2)
