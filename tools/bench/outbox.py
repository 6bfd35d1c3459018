"""Outbox throughput against raw paho, in one run against one local mosquitto.

    .venv/bin/python tools/bench/outbox.py [--n 20000] [--backlog 100000] [--nodelay both]
                                           [--display sim|none]

(a) raw paho: N 200-byte QoS 1 messages published back to back (pipelined), timed
    until the last PUBACK;
(b) the kiosk: N check-ins scanned as a rush into a running kiosk (the real scan
    path: inbox, controller, durable commit with synchronous=FULL, publish window,
    PUBACK, batched delete), timed from the first scan until the outbox is empty;
    with ``--display sim`` (the default) the kiosk has its simulated OLED fitted, as
    a kiosk at a counter does: every check-in asks for its screen;
(c) the kiosk: a backlog of ``--backlog`` check-ins already in the outbox when it
    starts (an outage's worth), timed from start until the outbox is empty.

A QoS 1 subscriber (the backend's part) takes every message in all three, so the
broker does the same work for each; it runs in its own process, as a backend does.
The broker runs without persistence: the test broker's save-after-every-change
would be the bottleneck, and a production broker snapshots only every
``autosave_interval``. ``--nodelay`` runs the broker with and
without ``set_tcp_nodelay`` to show whether it matters. Prints events/s and the
ratio (b)/(a); targets: (b)/(a) >= 0.5, (c) <= 30 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from drivers.specs import CameraSpec, LightsSpec, SerialSpec
from kiosk.config import OutboxSection, TelemetrySection
from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.events import CodeRead
from kiosk.mqtt import protocol
from kiosk.store.db import open_db
from kiosk.store.outbox import Outbox
from kiosk.testing.broker import Mosquitto, free_port
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for

SUBSCRIBER = """
import sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
subscribed = threading.Event()
client.on_subscribe = lambda *_: subscribed.set()
client.connect(sys.argv[1], int(sys.argv[2]))
client.subscribe(sys.argv[3], qos=1)
client.loop_start()
subscribed.wait(10)
print("subscribed", flush=True)
sys.stdin.read()
"""


class Subscriber:
    """A QoS 1 subscriber in its own process: the backend's share of the work, kept out of
    the kiosk's process (and its GIL) as a real backend is."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, broker.host, str(broker.port), topic],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "subscribed":
            raise RuntimeError("the subscriber did not subscribe")

    def close(self) -> None:
        self._process.communicate("", timeout=10)


def raw_paho(broker: Mosquitto, n: int) -> float:
    """(a) N pipelined QoS 1 publishes; seconds until every PUBACK is in."""
    done = threading.Event()
    acked = 0

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1
        if acked == n:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    payload = b"x" * 200
    start = time.perf_counter()
    for _ in range(n):
        client.publish("bench/raw", payload, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return elapsed


def _kiosk(root: Path, broker: Mosquitto, n: int, display: str = "none") -> RunningKiosk:
    config = sim_config(root, broker.port, device_id="bench")
    return RunningKiosk(replace(
        config, camera=CameraSpec(backend="none"), serial=SerialSpec(backend="none"),
        display=replace(config.display, backend=display), lights=LightsSpec(backend="none"),
        telemetry=TelemetrySection(interval_s=0),
        outbox=OutboxSection(max_rows=max(n, 1) * 2, max_mb=1000.0),
        counter=replace(config.counter, cooldown_s=0.0),
    ))


def kiosk_rush(root: Path, broker: Mosquitto, n: int, display: str = "none") -> float:
    """(b) N scans into a running kiosk (its display ``display``: "sim" or "none"); seconds
    until the outbox is empty."""
    kiosk = _kiosk(root, broker, n, display).start()
    try:
        kiosk.wait_online()
        app = kiosk.app
        start = time.perf_counter()
        for k in range(n):
            while len(app.inbox) >= 48:  # a fast scanner, but never past the scan lane
                time.sleep(0.0002)
            app.inbox.put(CodeRead(f"LOY-B{k:07d}", "serial", time.time()))
        wait_for(lambda: app.checkins_recorded == n and app.outbox.depth == 0, timeout=600,
                 what="the rush delivered")
        elapsed = time.perf_counter() - start
        if app.scans_not_taken:
            raise RuntimeError(f"{app.scans_not_taken} scans were not taken")
        return elapsed
    finally:
        kiosk.stop(60)


def kiosk_backlog(root: Path, broker: Mosquitto, n: int) -> float:
    """(c) N check-ins waiting in the outbox at start; seconds until it is empty."""
    conn, _ = open_db(root / "kiosk.db")
    outbox = Outbox(conn, max_rows=n * 2)
    for first in range(0, n, 5000):
        rows = []
        for k in range(first, min(n, first + 5000)):
            checkin = CheckIn(uuid7(), "bench", "boot0", k + 1, time.time(), f"LOY-C{k:07d}",
                              "camera")
            rows.append((checkin.event_id, protocol.encode_checkin(checkin)))
        outbox.add_many(rows, [])
    conn.close()
    start = time.perf_counter()
    kiosk = _kiosk(root, broker, n).start()
    try:
        wait_for(lambda: kiosk.app.outbox.depth == 0, timeout=600, what="the backlog drained")
        return time.perf_counter() - start
    finally:
        kiosk.stop(60)


def run(nodelay: bool, n: int, backlog: int, display: str = "none") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # persistence=False: the test broker otherwise saves after every change, which a
        # production broker (a snapshot every autosave_interval, 30 min) does not.
        port = free_port()
        broker = Mosquitto(root / "broker", port=port, persistence=False, drop_in=(
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"max_queued_messages 1000000\n{'set_tcp_nodelay true' if nodelay else ''}\n"))
        broker.start()
        try:
            subscriber = Subscriber(broker, "#")
            a = raw_paho(broker, n)
            b = kiosk_rush(root / "rush", broker, n, display)
            c = kiosk_backlog(root / "backlog", broker, backlog)
            subscriber.close()
        finally:
            broker.stop()
    label = "set_tcp_nodelay true" if nodelay else "mosquitto defaults"
    print(f"broker: {label}")
    print(f"  (a) raw paho QoS 1, pipelined     {n:>7} msgs  {a:7.2f} s  {n / a:8.0f} msg/s")
    print(f"  (b) kiosk rush: commit + drain    {n:>7} scans {b:7.2f} s  {n / b:8.0f} /s"
          f"   (b)/(a) = {a / b:.2f}  [target >= 0.5]  display: {display}")
    print(f"  (c) kiosk backlog replay          {backlog:>7} rows  {c:7.2f} s  "
          f"{backlog / c:8.0f} /s   [target <= 30 s]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="messages for (a) and (b)")
    parser.add_argument("--backlog", type=int, default=100000, help="rows for (c)")
    parser.add_argument("--nodelay", choices=["off", "on", "both"], default="off")
    parser.add_argument("--display", choices=["sim", "none"], default="sim",
                        help="the rush kiosk's display: simulated OLED fitted, or none")
    args = parser.parse_args()
    for nodelay in {"off": [False], "on": [True], "both": [False, True]}[args.nodelay]:
        run(nodelay, args.n, args.backlog, args.display)


if __name__ == "__main__":
    main()
