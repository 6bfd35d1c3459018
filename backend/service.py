"""The reference loyalty backend on the broker: check-ins in, replies out.

It hears every kiosk's check-ins, credits them in the :class:`~backend.ledger.Ledger`
(once per ``event_id``: the kiosk delivers at least once), and answers on the kiosk's
``reply`` topic with the member's balance, tier and progress to the next reward. A
shop's real backend replaces it by speaking the same protocol.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt

from backend.ledger import Ledger
from kiosk.mqtt import protocol
from kiosk.mqtt.client import Persistent, make_client
from kiosk.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


class LoyaltyBackend:
    """Connects the ledger to the broker: check-ins in, replies out.

    A check-in whose ``device_id`` is not the kiosk of the topic it came on is
    refused: behind the broker's ACL only that kiosk can write there, so a
    kiosk cannot check visits in under another kiosk's name.
    """

    def __init__(self, host: str, port: int, ledger: Ledger, prefix: str = "loyalty",
                 client_id: str = "loyalty-backend", *, ca_file: str = "", cert_file: str = "",
                 key_file: str = "") -> None:
        """``ca_file`` turns TLS on (the broker's certificate and host name are checked);
        ``cert_file`` and ``key_file`` are this backend's client certificate."""
        self.ledger = ledger
        self.broker = MqttSettings(host=host, port=port, topic_prefix=prefix,
                                   tls=bool(ca_file), ca_file=ca_file, cert_file=cert_file,
                                   key_file=key_file, reconnect_min_s=1.0, reconnect_max_s=5.0)
        self.received = 0
        self.duplicates = 0
        self.rejected = 0
        self.connected = threading.Event()
        # The session is persistent, and taken up even on the first connect: check-ins
        # published while the backend was away are queued by the broker, not dropped.
        self._client = make_client(
            self.broker, client_id, session=Persistent(SESSION_EXPIRY_S, resume_at_start=True),
            on_connect=self._on_connect, on_disconnect=lambda *_: self.connected.clear(),
            on_message=self._on_message, on_subscribe=self._on_subscribe)

    def start(self) -> None:
        """Connect in the background (retrying until the broker is there)."""
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(protocol.checkins_of_all_kiosks(self.broker.topic_prefix), qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if not any(code.is_failure for code in codes):
            self.connected.set()  # only now are check-ins sure to reach us

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            checkin, replayed = protocol.decode_checkin(message.payload)
            sender = protocol.device_of(message.topic)
            if checkin.device_id != sender:
                raise protocol.ProtocolError(
                    f"device_id {checkin.device_id!r} is not the kiosk {sender!r} that sent it")
            status, new = self.ledger.credit(checkin, replayed)
            self.received += 1
            self.duplicates += not new
            client.publish(protocol.reply_topic_for(message.topic),
                           protocol.encode_reply(checkin.event_id, checkin.member_id, status),
                           qos=1)
            log.info("visit %s of %s: %d pts%s", checkin.event_id,
                     protocol.redact(checkin.member_id), status.balance,
                     "" if new else " (duplicate)")
        except protocol.ProtocolError as exc:
            self.rejected += 1
            log.warning("rejected a check-in on %s: %s", message.topic, exc)
        except Exception:  # never let an exception kill paho's thread
            self.rejected += 1
            log.exception("failed to handle a check-in on %s", message.topic)
