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
and queues. A visit over the rules' visit limit is recorded (``limited``), credits
nothing and is acknowledged ``duplicate`` — "recorded, nothing changes", the word a
kiosk already acts on — so a kiosk deletes it and shows the unchanged balance.

The rules file is re-read (SIGHUP, or the admin API) by the same worker, between two
batches: a transaction reads the rules once, so every check-in is credited under exactly
one version, which its ledger entries name; an invalid file leaves the rules in force,
and :meth:`LoyaltyBackend.health` shows why until a reload succeeds.

Several instances share the load when given a ``share_group``: each subscribes through
the broker's shared subscription (``$share/<group>/…``, MQTT 5 and mosquitto 2.0 for
3.1.1 clients too), so each check-in goes to one of them; they share one PostgreSQL
ledger, which keeps the crediting exactly once whichever instance (or two, after a
kill) handles a check-in. A shop's real backend replaces this one by speaking the same
protocol.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from backend.ledger import Ledger, Outcome, Refusal
from backend.rules import RulesError, load_rules
from kiosk.mqtt import protocol
from kiosk.mqtt.client import Persistent, connect_now, make_client, max_packet
from kiosk.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
BATCH = 500
"""Check-ins credited in one transaction at most."""
REPLY_WINDOW = 1000
"""Replies sent and not yet PUBACKed: a whole batch's worth, so answering a batch is not
held to twenty per broker round trip (paho's default window)."""
EXPIRY_SWEEP_S = 3600.0
"""How often dormant balances are expired (when the rules expire points at all)."""


@dataclass
class _Reload:
    """A request to re-read the rules file, handled by the worker between two batches;
    ``done`` is set once it is (with ``error`` empty, or the file's one-line error)."""

    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


@dataclass(frozen=True)
class _Visit:
    """A check-in as it came off the broker, decoded: to be credited."""

    reply_topic: str
    checkin: protocol.CheckIn
    replayed: bool
    site: str


@dataclass(frozen=True)
class _Refused:
    """A check-in as it came off the broker that can never be credited: to be recorded."""

    reply_topic: str
    refusal: Refusal


_Arrived = _Visit | _Refused


class LoyaltyBackend:
    """Connects the ledger to the broker: check-ins in, replies out.

    A check-in whose ``device_id`` is not the kiosk of the topic it came on is
    refused: behind the broker's ACL only that kiosk can write there, so a
    kiosk cannot check visits in under another kiosk's name.
    """

    batches = True
    """It takes batches of check-ins: it subscribes to ``evt/checkins`` and says so in every
    answer (``"batches":true``), which is what makes a kiosk send them
    (docs/protocol.md, "Batches of check-ins"). False behaves as a backend written before
    batches."""

    def __init__(self, host: str, port: int, ledger: Ledger, prefix: str = "loyalty",
                 client_id: str = "loyalty-backend", *, share_group: str = "",
                 ca_file: str = "", cert_file: str = "", key_file: str = "",
                 rules_file: Path | None = None) -> None:
        """``share_group`` makes this one of several instances sharing the check-ins (each
        with its own ``client_id``); ``ca_file`` turns TLS on (the broker's certificate and
        host name are checked); ``cert_file`` and ``key_file`` are this backend's client
        certificate; ``rules_file`` is what :meth:`reload_rules` re-reads."""
        self.ledger = ledger
        self.rules_file = rules_file
        self.reload_error = ""
        """The last reload's one-line error ("" once a reload succeeds)."""
        self.broker = MqttSettings(host=host, port=port, topic_prefix=prefix,
                                   tls=bool(ca_file), ca_file=ca_file, cert_file=cert_file,
                                   key_file=key_file, reconnect_min_s=1.0, reconnect_max_s=5.0)
        self.share_group = share_group
        self._client_id = client_id
        self.received = 0
        self.duplicates = 0
        self.limited = 0
        """Visits over the visit limit: recorded, not credited."""
        self._answer_bytes = protocol.REPLY_BATCH_LIMITS.max_bytes  # less on a stricter broker
        self._says_batches = False  # its subscription to evt/checkins was granted
        self._unreadable = 0  # counted on paho's thread
        self._refused = 0  # counted on the worker thread (one writer each: no lost counts)
        self.connected = threading.Event()
        self._arrived: queue.SimpleQueue[_Arrived | _Reload | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._credit_batches, name="backend-ledger",
                                        daemon=True)
        # The session is persistent, and taken up even on the first connect: check-ins
        # published while the backend was away are queued by the broker, not dropped.
        self._client = make_client(
            self.broker, client_id, session=Persistent(SESSION_EXPIRY_S, resume_at_start=True),
            inflight=REPLY_WINDOW, on_connect=self._on_connect,
            on_disconnect=lambda *_: self.connected.clear(), on_message=self._on_message,
            on_subscribe=self._on_subscribe)

    @property
    def rejected(self) -> int:
        """Check-ins refused for good (recorded and answered ``refused``) or unreadable."""
        return self._unreadable + self._refused

    def start(self) -> None:
        """Connect in the background (retrying until the broker is there)."""
        self._worker.start()
        self._client.loop_start()

    def retire(self, timeout: float = 10.0) -> bool:
        """End this instance's session at the broker for good (instead of :meth:`start`):
        connect once with a clean session and leave. A persistent session whose client is
        gone still gets its share of a shared subscription, queued for it; after this the
        group's other instances get everything. True when the broker accepted it."""
        done = threading.Event()
        accepted: list[bool] = []

        def answered(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            accepted.append(not reason.is_failure)
            done.set()

        client = make_client(self.broker, self._client_id, on_connect=answered)
        connect_now(client)
        done.wait(timeout)
        client.disconnect()
        client.loop_stop()
        return bool(accepted and accepted[0])

    def health(self) -> dict[str, object]:
        """What this instance has done since it started (the admin API's health)."""
        return {"instance": self._client_id, "connected": self.connected.is_set(),
                "share_group": self.share_group, "received": self.received,
                "duplicates": self.duplicates, "limited": self.limited,
                "rejected": self.rejected,
                "rules": {"version": self.ledger.rules.version, "source": self.ledger.rules.source,
                          "reload_error": self.reload_error}}

    def request_reload(self) -> _Reload:
        """Ask the worker to re-read the rules file between two batches (safe from a signal
        handler: it only queues the request)."""
        request = _Reload()
        self._arrived.put(request)
        return request

    def reload_rules(self, timeout: float = 30.0) -> str:
        """Re-read the rules file and wait until the worker has put it in force: "" when it
        has, else the one-line reason the rules in force stay (an invalid file...)."""
        request = self.request_reload()
        if not request.done.wait(timeout):
            return f"the worker did not take the reload within {timeout:g} s; it is queued"
        return request.error

    def stop(self) -> None:
        """Disconnect, then finish the batch in hand and stop both threads (what was not
        credited is not acknowledged: the kiosks send it again)."""
        self._client.disconnect()
        self._client.loop_stop()
        self._arrived.put(None)
        self._worker.join(10)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any,
                    properties: Any) -> None:
        self._answer_bytes = protocol.batch_bytes(protocol.REPLY_BATCH_LIMITS,
                                                  max_packet(properties))
        if not reason.is_failure:
            prefix = self.broker.topic_prefix
            topics = [protocol.checkins_of_all_kiosks(prefix)]
            if self.batches:
                topics.append(protocol.checkin_batches_of_all_kiosks(prefix))
            if self.share_group:
                topics = [f"$share/{self.share_group}/{topic}" for topic in topics]
            client.subscribe([(topic, 1) for topic in topics])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        singles, *batches = codes  # in the order subscribed: evt/checkin, then evt/checkins
        self._says_batches = bool(batches) and not batches[0].is_failure
        if batches and not self._says_batches:
            log.warning("the broker refused the subscription to batches of check-ins (%s): "
                        "kiosks get one check-in a message", batches[0])
        if not singles.is_failure:
            if not self.connected.is_set():
                log.info("subscribed: check-ins reach %s now", self._client_id)
            self.connected.set()  # only now are check-ins sure to reach us

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            for arrived in self._decode(message.topic, bytes(message.payload)):
                self._arrived.put(arrived)
        except protocol.ProtocolError as exc:  # nothing in it names a check-in to answer
            self._unreadable += 1
            log.warning("ignored a message on %s: %s", message.topic, exc)
        except Exception:  # never let an exception kill paho's thread
            self._unreadable += 1
            log.exception("failed to handle a check-in on %s", message.topic)

    def _decode(self, topic: str, payload: bytes) -> list[_Arrived]:
        """The check-ins of a message (one, or a batch from ``evt/checkins``), each as a visit
        or the refusal of one that can never be credited (if it names its ``event_id``: else
        nothing can be answered, and the kiosk's alarm will say so)."""
        reply_topic, sender = protocol.reply_topic_for(topic), protocol.device_of(topic)
        site = (protocol.kiosk_of(topic) or ("", ""))[0]

        def visit(checkin: protocol.CheckIn, replayed: bool, said: bytes | None) -> _Arrived:
            """``said``: the message, or None for a batch's entry (encoded again if refused)."""
            if checkin.device_id != sender:
                return _Refused(reply_topic, Refusal(
                    checkin.event_id, sender,
                    f"device_id {checkin.device_id!r} is not the kiosk {sender!r} that sent it",
                    protocol.encode_checkin(checkin) if said is None else said))
            return _Visit(reply_topic, checkin, replayed, site)

        if protocol.is_batch(topic):
            arrivals: list[_Arrived] = []
            for entry in protocol.decode_checkins(payload):
                if isinstance(entry, tuple):
                    arrivals.append(visit(*entry, None))
                elif entry.event_id is not None:
                    arrivals.append(_Refused(reply_topic, Refusal(
                        entry.event_id, sender, entry.reason, entry.payload)))
                else:
                    self._unreadable += 1
                    log.warning("ignored a check-in without a readable event_id in a batch "
                                "on %s: %s", topic, entry.reason)
            return arrivals
        try:
            return [visit(*protocol.decode_checkin(payload), payload)]
        except protocol.ProtocolError as exc:
            event_id = protocol.event_id_of(payload)
            if event_id is None:
                raise
            return [_Refused(reply_topic, Refusal(event_id, sender, str(exc), payload))]

    def _credit_batches(self) -> None:
        """The worker: credit what has arrived in one transaction, then answer each."""
        next_sweep = 0.0
        while True:
            if self.ledger.rules.expire_after_days and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + EXPIRY_SWEEP_S
                self._expire()
            try:
                first = self._arrived.get(timeout=max(0.0, next_sweep - time.monotonic())
                                          if self.ledger.rules.expire_after_days else None)
            except queue.Empty:
                continue
            if first is None:
                break
            if isinstance(first, _Reload):
                self._reload(first)
                continue
            batch: list[_Arrived] = [first]
            reload = None
            while len(batch) < BATCH:
                try:
                    more = self._arrived.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._arrived.put(None)  # stop after this batch
                    break
                if isinstance(more, _Reload):
                    reload = more  # after this batch, before the next one
                    break
                batch.append(more)
            try:
                self._credit(batch)
            except Exception:  # not acknowledged: the kiosks send these again
                log.exception("failed to credit %d check-ins; they will come again", len(batch))
            if reload is not None:
                self._reload(reload)

    def _reload(self, request: _Reload) -> None:
        """Re-read the rules file (on the worker, between batches: every check-in is
        credited under exactly one version); an invalid file leaves the rules in force."""
        in_force = self.ledger.rules
        try:
            if self.rules_file is None:
                raise RulesError("no rules file to re-read: the backend runs its built-in "
                                 "rules (start it with --rules FILE)")
            rules = load_rules(self.rules_file)
        except RulesError as exc:
            request.error = self.reload_error = str(exc)
            log.error("rules not reloaded, version %s stays in force: %s", in_force.version,
                      exc)
        else:
            self.ledger.use_rules(rules)
            self.reload_error = ""
            log.info("rules reloaded from %s: version %s (was %s)", rules.source,
                     rules.version, in_force.version)
        request.done.set()

    def _expire(self) -> None:
        try:
            expired = self.ledger.expire_due()
        except Exception:  # tried again at the next sweep
            log.exception("failed to expire dormant balances")
            return
        if expired:
            log.info("expired the balances of %d dormant members", expired)

    def _credit(self, batch: list[_Arrived]) -> None:
        """Record the batch in one transaction, then answer each check-in; one log line per
        batch (a line per visit, at DEBUG, would cost more than crediting it)."""
        visits = [(a.checkin, a.replayed, a.site) for a in batch if isinstance(a, _Visit)]
        refusals = [a.refusal for a in batch if isinstance(a, _Refused)]
        results = iter(self.ledger.record_outcomes(visits, refusals))  # committed: answer
        outcomes: Counter[Outcome] = Counter()
        detail = log.isEnabledFor(logging.DEBUG)
        answers: dict[str, list[bytes]] = {}
        for arrived in batch:
            if isinstance(arrived, _Refused):
                refusal = arrived.refusal
                self._refused += 1
                log.warning("refused check-in %s from %s: %s", refusal.event_id,
                            refusal.device_id, refusal.reason)
                body = protocol.encode_refusal(refusal.event_id,
                                               protocol.member_of(refusal.payload),
                                               refusal.reason, batches=self._says_batches)
            else:
                checkin = arrived.checkin
                recorded = next(results)
                outcomes[recorded.outcome] += 1
                if detail:
                    log.debug("visit %s of %s: %d pts (%s)", checkin.event_id,
                              protocol.redact(checkin.member_id), recorded.status.balance,
                              recorded.outcome)
                body = protocol.encode_reply(
                    checkin.event_id, checkin.member_id, recorded.status,
                    protocol.Ack.CREDITED if recorded.outcome is Outcome.CREDITED
                    else protocol.Ack.DUPLICATE, batches=self._says_batches)
            answers.setdefault(arrived.reply_topic, []).append(body)
        for topic, bodies in answers.items():  # one message per kiosk and batch, mostly
            for message in protocol.encode_replies(bodies, self._answer_bytes):
                self._client.publish(topic, message, qos=1)
        self.received += len(visits)
        self.duplicates += outcomes[Outcome.DUPLICATE]
        self.limited += outcomes[Outcome.LIMITED]
        if visits:
            log.log(logging.WARNING if outcomes[Outcome.LIMITED] else logging.INFO,
                    "%d check-ins: %d credited, %d duplicates, %d over the visit limit",
                    len(visits), outcomes[Outcome.CREDITED], outcomes[Outcome.DUPLICATE],
                    outcomes[Outcome.LIMITED])
