"""A fleet simulator for integrators: N virtual kiosks in one process, against a real broker.

Each virtual kiosk runs the kiosk's own provisioning code: its
:class:`~kiosk.provisioning.desk.StaffDesk` checks signatures, targets, expiry and
sequence numbers (kept in its own SQLite sequence book), its
:class:`~kiosk.provisioning.shadow.Shadow` stores a desired config as a trial overlay
in its own state folder, "restarts" (builds a new desk from the files, as the daemon
does), promotes the trial once "connected" and reports ``config/reported``; it answers
commands with the real command table. What is simulated is the rest of a kiosk: there
is no camera, display or outbox, its health report is a quiet one, and it shares an
MQTT connection with up to ``per_connection`` other virtual kiosks (a broker serves
a fleet of 10,000 this way without 10,000 sockets from one laptop).

Staff tools see the simulated fleet exactly as they see real kiosks: retained
``status``, ``state``, ``config/reported`` and health reports under each kiosk's
topics, results on ``cmd/<name>/result``. So ``kioskctl`` (and an integrator's own
tooling) can be tried on 1,000 kiosks on a laptop::

    with SimulatedFleet(MqttSettings(port=1883), Path("/dev/shm/fleet"), 1000,
                        trusted=(public_key,)) as fleet:
        fleet.wait_reported()
        ...  # kioskctl --all, or your own tools
        fleet.take_offline(["sim-00007"])  # its orders wait, as a broker session keeps them

Virtual kiosks in ``flaky`` cannot "connect" with a new config, so they roll it back
after ``staff.rollback_after_s``, as a real kiosk would. All kiosks are handled on one
thread (the desk's rule: one owner of state); paho's threads only queue messages.

Software updates are simulated as the fleet contract describes the real kiosk's side:
a signed ``update`` command (checked by the kiosk's real guard) whose ``manifest`` is a
release manifest (:func:`release_manifest` makes one) is accepted (result
``{"accepted": version}``), the retained ``state`` then reports ``release.trying``, and
after ``update_trial_s`` either ``release.running`` (the new version is healthy) or, for
kiosks in ``failing_updates``, ``release.last_failure`` (it was switched back). A
downgrade not asked for (``"downgrade": true``) is refused. The manifest's shape is
checked, its signature and files are not: that is the real kiosk's work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import queue
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from PIL import Image

from kiosk import __version__
from kiosk.config import Config, KioskSection, StaffSection
from kiosk.counter.events import Cue, StaffMessage
from kiosk.mqtt import protocol
from kiosk.mqtt.client import connect_now, make_client
from kiosk.mqtt.envelope import Rejected, unseal
from kiosk.mqtt.settings import MqttSettings
from kiosk.provisioning import overlay
from kiosk.provisioning.desk import StaffDesk
from kiosk.provisioning.shadow import Shadow
from kiosk.store.db import SCHEMA
from kiosk.trust.release import ManifestError, Release, ReleaseFile, parse_manifest, sign
from kiosk.trust.signing import Signer

log = logging.getLogger(__name__)

FIRMWARE = f"{__version__}-sim"
UPDATE = "update"
"""The command that installs a release (the fleet contract's update order)."""


def device_name(index: int) -> str:
    """The id of the ``index``-th virtual kiosk."""
    return f"sim-{index:05d}"


class _QuietParts:
    """What commands may touch of a virtual kiosk: no lights, no display, a quiet report."""

    def __init__(self, kiosk: VirtualKiosk) -> None:
        self._kiosk = kiosk

    def health(self) -> protocol.Health:
        counts: dict[str, Any] = {name: 0 for name in protocol.Health.__dataclass_fields__}
        counts.update(uptime_s=round(time.monotonic() - self._kiosk.started_at, 1),
                      state="ready", problems=[], cpu_temp_c=None, last_scan_at=None)
        return protocol.Health(**counts)

    def signal(self, meaning: Cue) -> bool:
        return False

    def display_size(self) -> tuple[int, int] | None:
        return None

    def show_frame(self, image: Image.Image | None) -> None:
        """No display."""

    def set_contrast(self, level: int) -> bool:
        return False

    def flush_member_cache(self) -> int:
        return 0

    def request_restart(self, reason: str) -> None:
        self._kiosk.restart_requested = reason


@dataclass
class VirtualKiosk:
    """One simulated kiosk: its local config, sequence book, desk and pending orders."""

    base: Config
    topics: protocol.Topics
    link: _Link
    flaky: bool = False
    online: bool = True
    started_at: float = field(default_factory=time.monotonic)
    restart_requested: str | None = None
    restarts: int = 0
    waiting: list[StaffMessage] = field(default_factory=list)
    """Orders that arrived while offline: the broker's session would keep them."""
    fails_updates: bool = False
    update_trial_s: float = 1.0
    release: dict[str, Any] = field(default_factory=lambda: {
        "running": FIRMWARE, "trying": None, "last_failure": None})
    """What it runs, tries and last failed to run, as its retained ``state`` reports it."""
    trial_ends: float = 0.0

    def __post_init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.conn.executescript(SCHEMA)
        self.desk = self._new_desk()

    def _new_desk(self) -> StaffDesk:
        """Parts built from the files, as the daemon builds them at every (re)start."""
        start = overlay.startup(self.base)
        shadow = Shadow(self.base, start, self.topics, self.link.publish,
                        _QuietParts(self).request_restart)
        return StaffDesk(_QuietParts(self), start.config, self.conn, self.topics,
                         self.link.publish, shadow)

    def come_up(self) -> None:
        """Connected (again): say so, as the daemon's link does, and report the config."""
        self.link.publish(self.topics.status, protocol.ONLINE, True)
        self.report_state()
        if not (self.flaky and self.desk.shadow.config != _good(self.base)):
            self.desk.link_up()

    def report_state(self) -> None:
        """The retained lifecycle state, with the release it runs (the fleet contract)."""
        body = json.loads(protocol.encode_state("ready", "", self.release["running"]))
        self.link.publish(self.topics.state, json.dumps({**body, "release": self.release},
                                                        separators=(",", ":")).encode(), True)

    def report_health(self) -> None:
        """One health report (QoS 0 on a real kiosk; here at QoS 1 with the rest)."""
        payload = protocol.encode_health(_QuietParts(self).health(), time.time())
        self.link.publish(self.topics.health, payload, False)

    def handle(self, message: StaffMessage) -> None:
        """An order arrived: the desk decides; a restart builds new parts from the files."""
        if not self.online:
            self.waiting.append(message)
            return
        if not self._update(message):
            self.desk.handle(message)
        self._restart_if_asked()

    def _update(self, message: StaffMessage) -> bool:
        """An ``update`` order the guard admits: tried as the contract says. False for every
        other message, and for an update the guard refuses (the desk answers those)."""
        if message.retained or self.topics.staff_order(message.topic) != ("cmd", UPDATE):
            return False
        try:
            order = self.desk.guard.admit(unseal(message.payload), "cmd", UPDATE)
        except Rejected:
            return False
        try:
            version = parse_manifest(order.args.get("manifest")).release.version
            error = ""
        except ManifestError as exc:
            version, error = "", str(exc)
        if version and _numbers(version) < _numbers(self.release["running"]) and not \
                order.args.get("downgrade"):
            error = f"{version} is older than {self.release['running']}: a downgrade not asked for"
        self.link.publish(self.topics.command_result(UPDATE), protocol.encode_result(
            order.cmd_id, not error, error, None if error else {"accepted": version}), False)
        if not error:
            self.release = {**self.release, "trying": version}
            self.trial_ends = time.monotonic() + self.update_trial_s
            self.report_state()
        return True

    def tick(self, now: float) -> None:
        """Time passes: a trial config that never connected is rolled back, a release on trial
        is kept (or, failing, switched back)."""
        if self.online:
            self.desk.tick(now)
            self._restart_if_asked()
            trying = self.release["trying"]
            if trying and now >= self.trial_ends:
                self.release = ({**self.release, "trying": None, "last_failure": {
                    "version": trying, "reason": "simulated: not healthy on the new release"}}
                    if self.fails_updates else {**self.release, "running": trying,
                                                "trying": None})
                self.report_state()

    def _restart_if_asked(self) -> None:
        if self.restart_requested is None:
            return
        self.restart_requested = None
        self.restarts += 1
        self.desk = self._new_desk()
        self.come_up()


def release_manifest(version: str) -> dict[str, Any]:
    """A release manifest as ``kioskctl release sign`` writes it, signed by a throwaway
    release key, naming one made-up wheel: enough for simulated kiosks, which check its
    shape but neither its signature nor its files (a real kiosk does both)."""
    wheel = ReleaseFile(f"loyalty_kiosk-{version}-py3-none-any.whl", 1, "0" * 64, "any")
    release = Release(version, "0", f"{sys.version_info.major}.{sys.version_info.minor}",
                      ("aarch64",), wheel.name, f"https://updates.example/{version}/", (wheel,))
    return sign(release, Signer.generate()).to_json()


def _numbers(version: str) -> tuple[int, ...]:
    """``1.10.2-sim`` -> ``(1, 10, 2)``: enough to tell a downgrade in the simulation."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _good(base: Config) -> Config:
    return overlay.in_force(base).config


class _Link:
    """One MQTT connection shared by some virtual kiosks; messages go to the fleet's queue."""

    def __init__(self, settings: MqttSettings, name: str,
                 inbox: queue.Queue[tuple[str, bytes, bool]]) -> None:
        self._subscribed = threading.Event()
        self._topics: list[str] = []
        self._inbox = inbox
        self.client = make_client(settings, name, inflight=1000, on_connect=self._on_connect,
                                  on_message=self._on_message,
                                  on_subscribe=lambda *_args: self._subscribed.set())

    def start(self, topics: list[str], timeout: float = 30.0) -> None:
        self._topics = topics
        connect_now(self.client)
        if not self._subscribed.wait(timeout):
            raise TimeoutError("the broker did not take the simulated fleet's subscriptions")

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any,
                    _properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message.topic, bytes(message.payload), bool(message.retain)))


class SimulatedFleet:
    """``count`` virtual kiosks on ``sites`` sites; a context manager that starts and stops
    them. State folders live under ``state_root`` (``/dev/shm`` keeps 10,000 fast)."""

    def __init__(self, broker: MqttSettings, state_root: Path, count: int,
                 trusted: tuple[str, ...], *, sites: int = 10, per_connection: int = 500,
                 flaky: Iterable[str] = (), rollback_after_s: float = 5.0,
                 health_every_s: float = 0.0, failing_updates: Iterable[str] = (),
                 update_trial_s: float = 1.0) -> None:
        self.broker = broker
        self._inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self._calls: queue.Queue[tuple[Any, queue.Queue[Any]]] = queue.Queue()
        self._stop = threading.Event()
        self._health_every_s = health_every_s
        self.kiosks: dict[str, VirtualKiosk] = {}
        self._by_topic: dict[str, VirtualKiosk] = {}
        self._groups: dict[str, list[VirtualKiosk]] = {}
        self._links: list[tuple[_Link, list[str]]] = []
        flaky, failing = set(flaky), set(failing_updates)
        link: _Link | None = None
        for index in range(count):
            if index % per_connection == 0:
                link = _Link(broker, f"fleet-sim-{index // per_connection}", self._inbox)
                self._links.append((link, []))
            assert link is not None
            device_id, site = device_name(index), f"site-{index % sites:02d}"
            base = Config(kiosk=KioskSection(device_id=device_id, site=site,
                                             state_dir=str(state_root / device_id)),
                          mqtt=broker,
                          staff=StaffSection(trusted_keys=trusted, clock_synced_file="",
                                             rollback_after_s=rollback_after_s))
            topics = protocol.Topics(broker.topic_prefix, site, device_id)
            kiosk = VirtualKiosk(base, topics, link, flaky=device_id in flaky,
                                 fails_updates=device_id in failing,
                                 update_trial_s=update_trial_s)
            self.kiosks[device_id] = kiosk
            self._by_topic[topics.config_desired] = kiosk
            self._links[-1][1].extend([topics.config_desired, topics.command("+")])
            for group in (protocol.command_topic(broker.topic_prefix, site),
                          protocol.command_topic(broker.topic_prefix)):
                self._groups.setdefault(group.rpartition("/")[0], []).append(kiosk)
        # A site's or the fleet's command reaches every kiosk of it: heard once, on the
        # first connection, and handed to each.
        self._links[0][1].extend(sorted(f"{prefix}/+" for prefix in self._groups))
        self._worker = threading.Thread(target=self._run, name="fleet-sim", daemon=True)

    def __enter__(self) -> SimulatedFleet:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> SimulatedFleet:
        """Connect, subscribe, and bring every kiosk up (status, state, config report)."""
        for link, topics in self._links:
            link.start(topics)
        self._worker.start()
        self.call(self._all_up)
        return self

    def _all_up(self) -> None:
        for kiosk in self.kiosks.values():
            kiosk.come_up()

    def stop(self) -> None:
        """Stop handling orders and disconnect (the kiosks' retained state stays)."""
        self._stop.set()
        self._worker.join(10)
        for link, _topics in self._links:
            link.stop()
        for kiosk in self.kiosks.values():
            kiosk.conn.close()

    def call(self, action: Any, timeout: float = 120.0) -> Any:
        """Run ``action()`` on the fleet's thread (it owns every kiosk) and return its value."""
        done: queue.Queue[Any] = queue.Queue()
        self._inbox.put(("", b"", False))  # wake the thread
        self._calls.put((action, done))
        return done.get(timeout=timeout)

    def take_offline(self, device_ids: Iterable[str]) -> None:
        """These kiosks go away (retained ``offline``); orders for them wait, as in a session."""
        def go() -> None:
            for device_id in device_ids:
                kiosk = self.kiosks[device_id]
                kiosk.online = False
                kiosk.link.publish(kiosk.topics.status, protocol.OFFLINE, True)
        self.call(go)

    def bring_online(self, device_ids: Iterable[str]) -> None:
        """They come back: up again, then what waited for them, in order."""
        def come() -> None:
            for device_id in device_ids:
                kiosk = self.kiosks[device_id]
                kiosk.online = True
                kiosk.come_up()
                waiting, kiosk.waiting = kiosk.waiting, []
                for message in waiting:
                    kiosk.handle(message)
        self.call(come)

    def versions(self) -> dict[str, int]:
        """The config version in force on every kiosk."""
        return self.call(lambda: {name: k.desk.shadow.version for name, k in self.kiosks.items()})

    def release(self, device_id: str) -> dict[str, Any]:
        """What one kiosk runs, tries and last failed to run (its ``state.release``)."""
        return dict(self.call(lambda: self.kiosks[device_id].release))

    def _run(self) -> None:
        next_tick = next_health = time.monotonic()
        while not self._stop.is_set():
            try:
                topic, payload, retained = self._inbox.get(timeout=0.2)
                if topic:
                    self._dispatch(topic, payload, retained)
            except queue.Empty:
                pass
            while not self._calls.empty():
                action, done = self._calls.get_nowait()
                done.put(action())
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 0.5
                for kiosk in self.kiosks.values():
                    kiosk.tick(now)
            if self._health_every_s and now >= next_health:
                next_health = now + self._health_every_s
                for kiosk in self.kiosks.values():
                    if kiosk.online:
                        kiosk.report_health()

    def _dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        kiosk = self._by_topic.get(topic)
        if kiosk is not None:
            kiosk.handle(StaffMessage(topic, payload, retained))
            return
        group = self._groups.get(topic.rpartition("/")[0])
        if group is not None:  # a site's or the fleet's command: every kiosk of it
            for member in group:
                member.handle(StaffMessage(topic, payload, retained))
            return
        device = protocol.kiosk_of(topic)
        if device is not None and device[1] in self.kiosks:
            self.kiosks[device[1]].handle(StaffMessage(topic, payload, retained))




def _trust_attached(argv: list[str]) -> list[str]:
    """``--trust KEY`` as ``--trust=KEY``: a base64url public key starts with ``-`` one time
    in 64, which argparse would take for an option."""
    attached: list[str] = []
    words = iter(argv)
    for word in words:
        attached.append(f"--trust={next(words, '')}" if word == "--trust" else word)
    return attached


def main(argv: list[str] | None = None) -> None:
    """``python -m kiosk.testing.fleet``: a simulated fleet until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m kiosk.testing.fleet",
                                     description="N virtual kiosks against a real broker")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--trust", action="append", required=True, metavar="PUBLIC_KEY",
                        help="a staff public key the kiosks trust (kioskctl keys list)")
    parser.add_argument("--flaky", type=int, default=0, metavar="N",
                        help="the first N kiosks roll every new config back")
    parser.add_argument("--state", default="/dev/shm/kiosk-fleet", help="state folders")
    args = parser.parse_args(_trust_attached(sys.argv[1:] if argv is None else argv))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    broker = MqttSettings(host=args.host, port=args.port)
    with SimulatedFleet(broker, Path(args.state), args.count, tuple(args.trust),
                        sites=args.sites, flaky=[device_name(i) for i in range(args.flaky)]):
        print(f"{args.count} simulated kiosks on {args.host}:{args.port}; Ctrl-C ends",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
