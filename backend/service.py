"""The reference loyalty backend on the broker: check-ins in, acknowledgements out.

It hears every kiosk's check-ins, credits them in the :class:`~backend.ledger.Ledger`
(once per ``event_id``: the kiosk delivers at least once), and only after that commit
answers on the kiosk's ``reply`` topic: the acknowledgement (``credited`` or
``duplicate``) with the member's balance, tier and progress to the next reward. A
check-in it can never credit (malformed, or in another kiosk's name) is recorded as
refused and answered ``refused`` with the reason, so the kiosk stops sending it. The
kiosk deletes a row only on one of these answers: that is where its guarantee ends.

Check-ins are credited in batches on a worker thread — whatever arrived while the
previous batch was being committed, in one transaction — so a fleet draining its
backlogs costs one disk sync per batch, not one per visit. paho's thread only decodes
and queues. A shop's real backend replaces this one by speaking the same protocol.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from backend.ledger import Ledger, Refusal
from kiosk.mqtt import protocol
from kiosk.mqtt.client import Persistent, make_client
from kiosk.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
BATCH = 500
"""Check-ins credited in one transaction at most."""


@dataclass(frozen=True)
class _Arrived:
    """A check-in as it came off the broker, decoded (``checkin``) or refused (``refusal``)."""

    reply_topic: str
    checkin: protocol.CheckIn | None
    replayed: bool
    refusal: Refusal | None


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
        """Check-ins refused for good (recorded and answered ``refused``) or unreadable."""
        self.connected = threading.Event()
        self._arrived: queue.SimpleQueue[_Arrived | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._credit_batches, name="backend-ledger",
                                        daemon=True)
        # The session is persistent, and taken up even on the first connect: check-ins
        # published while the backend was away are queued by the broker, not dropped.
        self._client = make_client(
            self.broker, client_id, session=Persistent(SESSION_EXPIRY_S, resume_at_start=True),
            on_connect=self._on_connect, on_disconnect=lambda *_: self.connected.clear(),
            on_message=self._on_message, on_subscribe=self._on_subscribe)

    def start(self) -> None:
        """Connect in the background (retrying until the broker is there)."""
        self._worker.start()
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect, then finish the batch in hand and stop both threads (what was not
        credited is not acknowledged: the kiosks send it again)."""
        self._client.disconnect()
        self._client.loop_stop()
        self._arrived.put(None)
        self._worker.join(10)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(protocol.checkins_of_all_kiosks(self.broker.topic_prefix), qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if not any(code.is_failure for code in codes):
            self.connected.set()  # only now are check-ins sure to reach us

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._arrived.put(self._decode(message.topic, bytes(message.payload)))
        except protocol.ProtocolError as exc:  # not even a check-in topic: nobody to answer
            self.rejected += 1
            log.warning("ignored a message on %s: %s", message.topic, exc)
        except Exception:  # never let an exception kill paho's thread
            self.rejected += 1
            log.exception("failed to handle a check-in on %s", message.topic)

    @staticmethod
    def _decode(topic: str, payload: bytes) -> _Arrived:
        """The check-in, or the refusal of one that can never be credited (if it names its
        ``event_id``: else nothing can be answered, and the kiosk's alarm will say so)."""
        reply_topic, sender = protocol.reply_topic_for(topic), protocol.device_of(topic)
        try:
            checkin, replayed = protocol.decode_checkin(payload)
            if checkin.device_id != sender:
                raise protocol.ProtocolError(
                    f"device_id {checkin.device_id!r} is not the kiosk {sender!r} that sent it")
            return _Arrived(reply_topic, checkin, replayed, None)
        except protocol.ProtocolError as exc:
            event_id = protocol.event_id_of(payload)
            if event_id is None:
                raise
            return _Arrived(reply_topic, None, False,
                            Refusal(event_id, sender, str(exc), payload))

    def _credit_batches(self) -> None:
        """The worker: credit what has arrived in one transaction, then answer each."""
        while (first := self._arrived.get()) is not None:
            batch = [first]
            while len(batch) < BATCH:
                try:
                    more = self._arrived.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._arrived.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                self._credit(batch)
            except Exception:  # not acknowledged: the kiosks send these again
                log.exception("failed to credit %d check-ins; they will come again", len(batch))

    def _credit(self, batch: list[_Arrived]) -> None:
        visits = [(a.checkin, a.replayed) for a in batch if a.checkin is not None]
        refusals = [a.refusal for a in batch if a.refusal is not None]
        results = iter(self.ledger.record(visits, refusals))  # committed: now answer
        answers: dict[str, list[bytes]] = {}
        for arrived in batch:
            if arrived.refusal is not None:
                refusal = arrived.refusal
                self.rejected += 1
                log.warning("refused check-in %s from %s: %s", refusal.event_id,
                            refusal.device_id, refusal.reason)
                body = protocol.encode_refusal(refusal.event_id,
                                               protocol.member_of(refusal.payload),
                                               refusal.reason)
            elif arrived.checkin is not None:
                checkin = arrived.checkin
                status, new = next(results)
                self.received += 1
                self.duplicates += not new
                log.info("visit %s of %s: %d pts%s", checkin.event_id,
                         protocol.redact(checkin.member_id), status.balance,
                         "" if new else " (duplicate)")
                body = protocol.encode_reply(
                    checkin.event_id, checkin.member_id, status,
                    protocol.Ack.CREDITED if new else protocol.Ack.DUPLICATE)
            else:
                continue
            answers.setdefault(arrived.reply_topic, []).append(body)
        for topic, bodies in answers.items():  # one message per kiosk and batch, mostly
            for message in protocol.encode_replies(bodies):
                self._client.publish(topic, message, qos=1)
