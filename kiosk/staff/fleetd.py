"""``kiosk-fleet``: the always-on fleet service — the fleet's state, the audit log, rollouts.

It hears every kiosk's retained messages, health reports and command results, every staff
order (desired configs, a kiosk's, a site's and the fleet's commands) and every rollout
record (:func:`protocol.fleet_service_view`), and keeps them in its own SQLite database
(:mod:`kiosk.staff.fleetdb`): the current state, an append-only audit log of every order
(verified against the staff keys it trusts before it is written down as someone's) and
what each kiosk said to it. ``kioskctl`` asks it (:mod:`kiosk.staff.asking`) for a summary,
the list, one kiosk, the audit log and rollouts' command results, instead of reading
every kiosk's retained messages itself.

One thread owns the database: paho's network thread only queues what arrives. Its MQTT
session persists (a fixed client id, ``clean_start`` off), so results and orders sent
while it restarts reach it afterwards, within the session expiry. Its retained
``<prefix>/_fleet/service/status`` is ``online`` while it runs and ``offline`` (also its
last will) when it stops. Run one per broker.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import sys
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from kiosk import KioskError, __version__
from kiosk.config import ConfigError, MqttSection, build
from kiosk.mqtt import protocol
from kiosk.mqtt.client import Persistent, connect_now, make_client
from kiosk.staff import asking, audit, fleet
from kiosk.staff.client import kiosks_of
from kiosk.staff.fleetdb import FleetStore
from kiosk.staff.keyring import Keyring
from kiosk.staff.settings import KeysSection
from kiosk.staff.summary import summarise
from kiosk.trust.signing import Verifier

log = logging.getLogger("kiosk.fleet")

DEFAULT_CONFIG = "/etc/kiosk-fleet/kiosk-fleet.toml"
CLIENT_ID = "kiosk-fleet"
SESSION_EXPIRY_S = 86400
BATCH = 2000
"""Messages written in one transaction at most."""


@dataclass(frozen=True)
class ServiceSection:
    """Where the service keeps its database."""

    db: str = "/var/lib/kiosk-fleet/fleet.db"


@dataclass(frozen=True)
class FleetSettings:
    """``kiosk-fleet.toml``: ``[mqtt]`` as a kiosk's (a ``fleet:<name>`` certificate on the
    shipped broker), ``[keys] dir`` the staff public keys it trusts (``kioskctl keys add``),
    ``[service] db``."""

    mqtt: MqttSection = field(default_factory=MqttSection)
    keys: KeysSection = field(default_factory=KeysSection)
    service: ServiceSection = field(default_factory=ServiceSection)


def load(path: Path) -> FleetSettings:
    """The service's settings; :class:`ConfigError` when the file is wrong or missing."""
    try:
        with path.open("rb") as file:
            settings: FleetSettings = build(FleetSettings, tomllib.load(file), "")
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return settings


class FleetService:
    """Hears the fleet, keeps it in the database, answers staff's questions."""

    def __init__(self, settings: FleetSettings) -> None:
        self._prefix = settings.mqtt.topic_prefix
        self.store = FleetStore(Path(settings.service.db).expanduser())
        self.latest: dict[str, bytes] = {topic: payload for topic, (payload, _at)
                                         in self.store.heard().items()}
        keys = Keyring(Path(settings.keys.dir).expanduser()).list()
        self._verifier = Verifier.from_texts([key.public for key in keys])
        self._names = {key.key_id: key.name for key in keys}
        self.started_at = time.time()
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._status = protocol.service_topic(self._prefix, protocol.SERVICE_STATUS)
        self._ask = protocol.service_topic(self._prefix, protocol.ASK)
        self._client = make_client(settings.mqtt, CLIENT_ID, inflight=100,
                                   session=Persistent(SESSION_EXPIRY_S, resume_at_start=True),
                                   on_connect=self._on_connect, on_message=self._on_message)
        self._client.will_set(self._status, protocol.OFFLINE, qos=1, retain=True)

    # --- paho's thread: queue only -----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any,
                    _properties: Any) -> None:
        if reason_code.is_failure:
            log.error("the broker refused the fleet service: %s", reason_code)
            return
        client.subscribe([(topic, 1) for topic in protocol.fleet_service_view(self._prefix)])
        client.publish(self._status, protocol.ONLINE, qos=1, retain=True)
        log.info("connected; listening to the fleet")

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message.topic, bytes(message.payload)))

    # --- the worker: owns the database ---------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Connect and work until ``stop`` is set; then say ``offline`` and disconnect."""
        connect_now(self._client)
        try:
            while not stop.is_set():
                self.work(timeout=0.5)
        finally:
            self._client.publish(self._status, protocol.OFFLINE, qos=1,
                                 retain=True).wait_for_publish(5)
            self._client.disconnect()
            self._client.loop_stop()
            self.store.close()

    def work(self, timeout: float) -> int:
        """Handle what has arrived (a batch), commit it, then answer the questions in it."""
        try:
            batch = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return 0
        while len(batch) < BATCH:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        questions = []
        now = time.time()
        for topic, payload in batch:
            if topic == self._ask:
                questions.append(payload)
            else:
                self.hear(topic, payload, now)
        self.store.commit()
        for payload in questions:
            self.answer(payload)
        return len(batch)

    def hear(self, topic: str, payload: bytes, now: float) -> None:
        """One message: an order goes to the audit log, a result or config report to the
        outcomes, and everything a kiosk or a rollout keeps to the current state."""
        leaf = protocol.leaf_of(topic) or ""
        if leaf == protocol.Leaf.CONFIG_DESIRED or protocol.is_command(topic):
            if payload:
                self.store.add_order(payload, audit.order_of(topic, payload, self._verifier,
                                                             self._names, now))
            return
        if protocol.is_command_result(topic):
            outcome = audit.result_outcome(topic, payload, now)
            if outcome is not None:
                self.store.add_outcome(outcome)
            return
        if leaf == protocol.Leaf.CONFIG_REPORTED:
            for outcome in audit.config_outcomes(topic, payload, now):
                self.store.add_outcome(outcome)
        if payload:
            self.latest[topic] = payload
        else:
            self.latest.pop(topic, None)
        self.store.remember(topic, payload, now)

    def answer(self, payload: bytes) -> None:
        """Answer one question (a malformed one is logged and dropped)."""
        try:
            body = protocol.decode_object(payload, asking.QUESTION_LIMITS)
            ask_id, client = body.text("id", 64), body.text("client", 64)
            name, args = body.text("q", 16), body.body.get("args") or {}
            if not protocol.TOPIC_WORD.match(client) or name not in asking.QUESTIONS:
                raise protocol.ProtocolError(f"no such question {name!r} or asker {client!r}")
            if not isinstance(args, dict):
                raise protocol.ProtocolError("args is not an object")
        except protocol.ProtocolError as exc:
            log.warning("dropped a question: %s", exc)
            return
        reply = getattr(self, f"_answer_{name}")(args)
        topic = protocol.service_topic(self._prefix, protocol.ANSWER, client)
        for part in asking.answer_parts(ask_id, reply):
            self._client.publish(topic, part, qos=1)

    def _kiosks(self) -> dict[tuple[str, str], dict[str, bytes]]:
        return kiosks_of(self.latest, self._prefix)

    def _answer_summary(self, _args: dict[str, Any]) -> dict[str, Any]:
        kiosks = fleet.survey_of(self._kiosks())
        return {"sites": [asdict(site) for site in summarise(kiosks)],
                "since": self.started_at, "kiosks": len(kiosks)}

    def _answer_list(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"kiosks": [asdict(kiosk) for kiosk in fleet.survey_of(self._kiosks())]}

    def _answer_show(self, args: dict[str, Any]) -> dict[str, Any]:
        everyone = self._kiosks()
        for kiosk in fleet.survey_of(everyone):
            if kiosk.device_id == args.get("device"):
                return {"kiosk": fleet.details_of(kiosk, everyone[kiosk.site, kiosk.device_id])}
        return {"kiosk": None}

    def _answer_audit(self, args: dict[str, Any]) -> dict[str, Any]:
        since = args.get("since", 0.0)
        return {"orders": self.store.audit(str(args.get("device", "")),
                                           float(since) if isinstance(since, int | float)
                                           else 0.0)}

    def _answer_results(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"results": self.store.results(str(args.get("rollout", "")))}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kiosk-fleet`` console script."""
    parser = argparse.ArgumentParser(prog="kiosk-fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"kiosk-fleet {__version__}")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"settings file (default {DEFAULT_CONFIG})")
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("serve", help="run the service until SIGTERM")
    backup = verbs.add_parser("backup", help="copy the database consistently, while it runs")
    backup.add_argument("destination", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        settings = load(Path(args.config))
        if args.verb == "backup":
            store = FleetStore(Path(settings.service.db).expanduser())
            try:
                store.backup(args.destination)
            finally:
                store.close()
            print(args.destination)
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        service = FleetService(settings)
        with contextlib.suppress(KeyboardInterrupt):
            service.run(stop)
    except ConfigError as exc:
        print(f"kiosk-fleet: {exc}", file=sys.stderr)
        return 2
    except (KioskError, OSError) as exc:
        print(f"kiosk-fleet: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
