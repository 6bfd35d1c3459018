"""The MQTT session: connection, last will, reconnects, subscriptions, publishing.

paho runs its network thread (``loop_start``); its callbacks only turn what
happened into typed events for the controller thread. They never block, take
no application lock and never raise: an exception would kill paho's thread
while ``is_connected()`` still said True.

The controller thread also *supervises* the link (:meth:`Link.supervise`, every
tick), because paho alone notices a silent network late (up to two keepalives)
and waits a whole keepalive for a CONNACK that will never come:

- a connected link that has heard nothing from the broker for half a keepalive
  re-publishes the retained ``online`` status as a probe; still nothing after a
  whole keepalive, and the connection is dropped (detected within 1x keepalive);
- a connection attempt without a CONNACK after ``connect_timeout_s`` is dropped,
  so paho's next attempt (after its back-off) finds a healed network quickly;
- a dead paho network thread is started again.

Dropping means shutting the socket down: paho then sees a lost connection and
reconnects as it always does, keeping its session and unacknowledged messages.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from kiosk import KioskError, __version__
from kiosk.counter.events import Acked, Event, LinkDown, LinkUp, Reply, StaffMessage
from kiosk.mqtt import protocol
from kiosk.mqtt.client import Persistent, make_client, max_packet
from kiosk.mqtt.hass import Discovery
from kiosk.mqtt.protocol import ProtocolError, Topics
from kiosk.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

NO_MATCHING_SUBSCRIBERS = 0x10
"""MQTT 5 PUBACK reason code (mosquitto 2 sends it for a QoS 1 message nobody subscribes to)."""


class LinkError(KioskError):
    """A message could not even be queued for sending."""


class Link:
    """One paho client for one kiosk; events go to ``emit`` (which must not block)."""

    def __init__(self, settings: MqttSettings, topics: Topics, client_id: str,
                 emit: Callable[[Event], None],
                 discovery: Discovery | None = None, resume: bool = False) -> None:
        """``resume``: take up the session an earlier process left (``session_kept``)."""
        self.topics = topics
        self._discovery = discovery
        self._settings = settings
        self._client_id = client_id
        self._emit = emit
        self.connects = 0
        self.bad_messages = 0
        self.drops = 0
        """Connections this side gave up on (silent broker, no CONNACK)."""
        self.thread_restarts = 0
        self.last_heard = 0.0
        """Monotonic time of the last packet from the broker (any acknowledgement or message)."""
        self.max_packet: int | None = None
        """The largest packet the broker takes, as its CONNACK announced (MQTT 5), or None."""
        self._up = False  # on_connect has run for the current connection
        self._attempt_at: float | None = None  # when the current connection attempt began
        self._probing = False
        self._client = self._new_client(resume)
        self._loop_thread: threading.Thread | None = None
        self._state = ("ready", "")
        self.release: Callable[[], dict[str, Any] | None] = lambda: None
        """The ``release`` part of the state (``kiosk.provisioning.update``); must not block
        or raise: it is read on paho's thread too."""

    def _new_client(self, resume: bool) -> mqtt.Client:
        # A persistent session: replies and staff orders sent while the kiosk was away
        # are kept by the broker and arrive on reconnect.
        client = make_client(self._settings, self._client_id,
                             session=Persistent(self._settings.session_expiry_s, resume),
                             # The publisher's window bounds what is in flight; a limit in
                             # paho too would make every PUBACK scan paho's whole message
                             # list for one to release (``Client._update_inflight``, 2.2.0).
                             inflight=0,
                             on_connect=self._on_connect, on_connect_fail=self._on_connect_fail,
                             on_disconnect=self._on_disconnect, on_message=self._on_message,
                             on_publish=self._on_publish, on_pre_connect=self._on_pre_connect)
        client.will_set(self.topics.status, protocol.OFFLINE, qos=1, retain=True)
        return client

    def set_state(self, state: str, reason: str) -> None:
        """The lifecycle state to report (retained), now if connected and after each connect."""
        self._state = (state, reason)
        if self._client.is_connected():
            self._publish_state()

    @property
    def lifecycle(self) -> str:
        """The lifecycle state reported: ``init``, ``ready``, ``degraded`` or ``offline``."""
        return self._state[0]

    def refresh_state(self) -> None:
        """Publish the state again (the release part changed)."""
        self.set_state(*self._state)

    def _publish_state(self) -> None:
        state, reason = self._state
        self._client.publish(self.topics.state,
                             protocol.encode_state(state, reason, __version__, self.release()),
                             qos=1, retain=True)

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        self._client.loop_start()
        self._loop_thread = self._client._thread  # paho exposes no public handle for it

    def stop(self, timeout: float = 2.0) -> None:
        """Say ``offline`` (retained) if connected, then disconnect and stop paho's thread."""
        if self._client.is_connected():
            self.set_state("offline", "shutdown")
            info = self._client.publish(self.topics.status, protocol.OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish offline status: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    def renew(self, settings: MqttSettings, discovery: Discovery | None, resume: bool) -> None:
        """Close this connection (saying ``offline``, as at shutdown) and connect with new
        settings (staff's new config): a new paho client, as one is made with its broker,
        credentials and session. The counts go on, and so does the state to report.

        The new client's message ids go on from the old one's, so a PUBACK of the old client
        still waiting in the inbox cannot be taken for one of the new (paho 2.2.0
        ``client.py``: ``_mid_generate`` counts ``_last_mid`` up to 65535, from 0 in
        ``__init__``). Messages the old client had not sent are dropped with it: the caller
        sends its own again (:meth:`kiosk.mqtt.publisher.Publisher.relinked`).
        """
        state, last_mid = self._state, self._client._last_mid
        self.stop()
        self._state = state
        self._settings, self._discovery = settings, discovery
        self._attempt_at, self._probing, self._up = None, False, False
        self._client = self._new_client(resume)
        self._client._last_mid = last_mid
        self.start()

    def supervise(self, now: float) -> None:
        """Notice a silent link, a hung connection attempt or a dead paho thread, and act.

        Called from the controller thread on every tick; ``now`` is monotonic time.
        """
        if self._loop_thread is not None and not self.alive():
            log.error("the MQTT network thread died; starting it again")
            self._client.loop_stop()  # the thread is dead: this only clears paho's handle
            self._client.loop_start()
            self._loop_thread = self._client._thread
            self.thread_restarts += 1
            return
        keepalive = self._settings.keepalive_s
        if self._client.is_connected():
            quiet = now - self.last_heard
            if quiet >= keepalive:
                self._drop(f"nothing from the broker for {quiet:.0f} s")
            elif quiet >= keepalive / 2 and not self._probing:
                self._probing = True  # any answer ends the probe (see _heard)
                self._client.publish(self.topics.status, protocol.ONLINE, qos=1, retain=True)
        elif (self._attempt_at is not None
              and now - self._attempt_at >= self._settings.connect_timeout_s):
            self._drop(f"no CONNACK within {self._settings.connect_timeout_s:g} s")

    def _drop(self, why: str) -> None:
        """Give up on this connection; paho reconnects after its back-off."""
        log.warning("dropping the broker connection: %s", why)
        self.drops += 1
        self._attempt_at = None
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed by paho: nothing to do
                sock.shutdown(socket.SHUT_RDWR)

    def _heard(self) -> None:
        self.last_heard = time.monotonic()
        self._probing = False

    def alive(self) -> bool:
        """True while paho's network thread runs (fed to the systemd watchdog)."""
        return self._loop_thread is not None and self._loop_thread.is_alive()

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up and its CONNACK has been read: paho
        counts itself connected just before it calls ``on_connect`` (paho 2.2.0
        ``client.py``, ``_handle_connack``), and the broker's packet size is only known
        after."""
        return self._up and self._client.is_connected()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Queue a message with paho and return its message id.

        While disconnected, paho keeps QoS 1 messages and sends them after the
        reconnect, so the id stays valid across a broker outage.
        """
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise LinkError(f"publish to {topic} refused: {mqtt.error_string(info.rc)}")
        return info.mid

    def _publish_retained(self, topic: str, payload: bytes, retain: bool) -> object:
        """For parts that publish from paho's thread (discovery): QoS 1, never blocks."""
        return self._client.publish(topic, payload, qos=1, retain=retain)

    # --- paho callbacks (paho's thread) ---------------------------------------

    def _on_pre_connect(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._attempt_at = time.monotonic()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any,
                    reason_code: Any, properties: Any) -> None:
        try:
            self.max_packet = max_packet(properties)
            self._attempt_at = None
            self._heard()
            if reason_code.is_failure:
                log.warning("broker refused the connection: %s", reason_code)
                self._emit(LinkDown(f"refused: {reason_code}"))
                return
            self.connects += 1
            self._up = True
            client.subscribe(self.topics.reply, qos=1)
            for topic in self.topics.staff_subscriptions:
                client.subscribe(topic, qos=1)
            client.publish(self.topics.status, protocol.ONLINE, qos=1, retain=True)
            self._publish_state()
            if self._discovery is not None:
                for topic in self._discovery.subscriptions:
                    client.subscribe(topic, qos=1)
                self._discovery.connected(self._publish_retained)
            log.info("connected to %s:%d (session present: %s)", self._settings.host,
                     self._settings.port, flags.session_present)
            self._emit(LinkUp())
        except Exception:
            log.exception("on_connect failed")

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho 2.2 (client.py, loop_forever) calls this from inside its `except OSError`
        # around reconnect() and passes no reason: the exception being handled is it.
        try:
            self._attempt_at = None  # the attempt is over; paho tries again after its back-off
            log.warning("cannot reach the broker at %s:%d: %s", self._settings.host,
                        self._settings.port, sys.exc_info()[1] or "no reason given")
        except Exception:
            log.exception("on_connect_fail failed")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason_code: Any, _properties: Any) -> None:
        try:  # paho may call this twice for one loss: LinkDown is idempotent downstream
            self._up = False
            if reason_code.value == 0:  # we asked for it (shutdown)
                log.info("disconnected from broker")
            else:
                log.warning("disconnected from broker: %s", reason_code)
            self._emit(LinkDown(str(reason_code)))
        except Exception:
            log.exception("on_disconnect failed")

    def _on_publish(self, client: mqtt.Client, _userdata: Any, mid: int,
                    reason_code: Any, _properties: Any) -> None:
        try:
            # paho 2.2.0 (src/paho/mqtt/client.py; the same in the repository at 1d04072)
            # calls on_publish for a QoS 0 message from _packet_write, once it is written to
            # the socket: the broker has said nothing. For QoS 1 it calls it from
            # _handle_pubackcomp, with the message still in _out_messages (removed after the
            # callback) -- where a QoS 0 message never is. Only that is hearing from the broker.
            if mid not in client._out_messages:
                return  # a health report left: not an acknowledgement, nothing to emit
            self._heard()
            # MQTT 5: "No matching subscribers" means the broker took the message and gave
            # it to nobody (a broker restarted without persistence, before the backend
            # subscribed again). For a check-in that is not delivery: keep it, try again.
            unrouted = reason_code.value == NO_MATCHING_SUBSCRIBERS
            self._emit(Acked(mid, ok=not (reason_code.is_failure or unrouted),
                             reason=str(reason_code)))
        except Exception:
            log.exception("on_publish failed")

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        try:
            self._heard()
            if message.topic == self.topics.reply:
                answers, refused = protocol.decode_replies(message.payload)
                for answer in answers:
                    self._emit(Reply(answer.event_id, answer.member_id, answer.status,
                                     answer.ack or "", answer.reason, answer.batches))
                if refused:
                    self.bad_messages += len(refused)
                    log.warning("ignored %d malformed answers in a reply batch: %s",
                                len(refused), refused[0])
            elif self.topics.staff_order(message.topic):  # checked on the controller thread
                self._emit(StaffMessage(message.topic, bytes(message.payload), message.retain))
            elif self._discovery is not None and self._discovery.wants(message.topic):
                self._discovery.message(message.topic, bytes(message.payload),
                                        self._publish_retained)
        except ProtocolError as exc:
            self.bad_messages += 1
            log.warning("ignored a malformed message on %s: %s", message.topic, exc)
        except Exception:
            log.exception("on_message failed")
