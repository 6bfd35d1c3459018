"""Outbox throughput against raw paho, in one run against one local mosquitto.

    .venv/bin/python tools/bench/outbox.py [--n 20000] [--backlog 100000] [--nodelay both]
                                           [--display sim|none]

(a) raw paho: N 200-byte QoS 1 messages published back to back (pipelined), timed
    until the last PUBACK;
(b) the kiosk: N check-ins scanned as a rush into a running kiosk that has served one
    customer before (its answer tells the kiosk its backend takes batches; the real scan
    path: inbox, controller, durable commit with synchronous=FULL, publish window,
    PUBACK, the backend's acknowledgement, batched delete), timed from the first scan
    until the outbox is empty: every check-in acknowledged by the backend; with
    ``--display sim`` (the default) the kiosk has its simulated OLED fitted, as a kiosk
    at a counter does: every check-in asks for its screen;
(c) the kiosk: a backlog of ``--backlog`` check-ins already in the outbox when it
    starts (an outage's worth; it knows from before the outage that its backend takes
    batches), timed from start until the outbox is empty (credited).

The same subscriber takes every message in all three, in its own process as a backend
runs: "a backend that keeps up", which answers every check-in with its acknowledgement,
what arrived meanwhile in one message per kiosk, and takes batches, as the reference
backend does (raw paho's messages are check-ins too, so it answers those as well). (a)
is timed to its last PUBACK, (b) and (c) until the backend's acknowledgement of the last check-in
has deleted it: the kiosk's figures include the way back. (d) repeats (c) with the
reference backend instead (its own process), which credits every check-in in its SQLite
ledger (synchronous=FULL, one transaction per batch) before acknowledging it.
The broker runs without persistence: the test broker's save-after-every-change
would be the bottleneck, and a production broker snapshots only every
``autosave_interval``. ``--nodelay`` runs the broker with and
without ``set_tcp_nodelay`` to show whether it matters. Prints events/s and the
ratio (b)/(a); targets: (b)/(a) >= 0.5, (c) <= 30 s.
"""

from __future__ import annotations

import argparse
import os
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
from kiosk.config import Config, OutboxSection, TelemetrySection
from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.events import CodeRead
from kiosk.daemon.build import BATCHES_FILE, backend_identity
from kiosk.daemon.inbox import SCAN_LANE
from kiosk.mqtt import protocol
from kiosk.store.db import open_db
from kiosk.store.outbox import Outbox
from kiosk.testing.broker import Mosquitto, free_port
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for

BACKEND = """
import sys, pathlib
from backend import Ledger, LoyaltyBackend
service = LoyaltyBackend(sys.argv[1], int(sys.argv[2]), Ledger(pathlib.Path(sys.argv[3])))
service.start()
service.connected.wait(10)
print("subscribed", flush=True)
sys.stdin.read()
service.stop()
"""
SUBSCRIBER = """
import json, queue, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from kiosk.mqtt import protocol
STATUS = protocol.MemberStatus("Bench", 10, "Bronze", 40, 0.2)
client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
subscribed = threading.Event()
client.on_subscribe = lambda *_: subscribed.set()
arrived = queue.SimpleQueue()
client.on_message = lambda _c, _u, m: arrived.put((m.topic, m.payload))
def answer():  # what arrived while the last batch was answered, in one message per kiosk
    while True:
        batch = [arrived.get()]
        while not arrived.empty() and len(batch) < 500:
            batch.append(arrived.get())
        answers = {}
        for topic, payload in batch:
            body = json.loads(payload)
            answers.setdefault(protocol.reply_topic_for(topic), []).extend(
                protocol.encode_reply(checkin["event_id"], checkin["member_id"], STATUS,
                                      protocol.Ack.CREDITED, batches=True)
                for checkin in (body["checkins"] if protocol.is_batch(topic) else [body]))
        for topic, bodies in answers.items():
            for message in protocol.encode_replies(bodies):
                client.publish(topic, message, qos=1)
threading.Thread(target=answer, daemon=True).start()
client.connect(sys.argv[1], int(sys.argv[2]))
client.subscribe([(sys.argv[3], 1), (protocol.checkin_batches_of_all_kiosks("loyalty"), 1)])
client.loop_start()
subscribed.wait(10)
print("subscribed", flush=True)
sys.stdin.read()
"""


class Subscriber:
    """A QoS 1 subscriber in its own process: the backend's share of the work, kept out of
    the kiosk's process (and its GIL) as a real backend is."""

    def __init__(self, broker: Mosquitto, argument: str, script: str = SUBSCRIBER) -> None:
        """``argument``: the topic for the plain subscriber, the ledger file for
        :data:`BACKEND`."""
        self._process = subprocess.Popen(
            [sys.executable, "-c", script, broker.host, str(broker.port), argument],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "subscribed":
            raise RuntimeError("the subscriber did not subscribe")

    def close(self) -> None:
        self._process.communicate("", timeout=10)


def raw_paho(broker: Mosquitto, n: int, per_message: int = 1) -> float:
    """(a) N check-ins published back to back at QoS 1 (pipelined), ``per_message`` in each
    message (1: one a message; more: batches on ``evt/checkins``, as the kiosk packs them);
    seconds until every PUBACK is in."""
    messages = -(-n // per_message)
    done = threading.Event()
    acked = 0

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1
        if acked == messages:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    checkins = [protocol.encode_checkin(CheckIn(uuid7(), "raw", "boot0", k, time.time(),
                                                 f"LOY-R{k:07d}", "serial")) for k in range(n)]
    topics = protocol.Topics("loyalty", "bench", "raw")
    if per_message == 1:
        topic, payloads = topics.checkin, checkins
    else:
        topic = topics.checkins
        payloads = [protocol.encode_checkins(checkins[k:k + per_message])
                    for k in range(0, n, per_message)]
    start = time.perf_counter()
    for payload in payloads:
        client.publish(topic, payload, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return elapsed


def _kiosk(root: Path, broker: Mosquitto, n: int, display: str = "none") -> RunningKiosk:
    return RunningKiosk(_config(root, broker, n, display))


def _config(root: Path, broker: Mosquitto, n: int, display: str = "none") -> Config:
    config = sim_config(root, broker.port, device_id="bench")
    return replace(
        config, camera=CameraSpec(backend="none"), serial=SerialSpec(backend="none"),
        display=replace(config.display, backend=display), lights=LightsSpec(backend="none"),
        telemetry=TelemetrySection(interval_s=0),
        outbox=OutboxSection(max_rows=max(n, 1) * 2, max_mb=1000.0),
        counter=replace(config.counter, cooldown_s=0.0),
    )


def kiosk_rush(root: Path, broker: Mosquitto, n: int, display: str = "none"
               ) -> tuple[float, int]:
    """(b) N scans into a running kiosk (its display ``display``: "sim" or "none"); seconds
    until the outbox is empty, and how many check-in messages carried them."""
    kiosk = _kiosk(root, broker, n, display).start()
    try:
        kiosk.wait_online()
        app = kiosk.app
        messages = 0
        publish = app.link.publish

        def counting(topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
            nonlocal messages
            messages += topic in (app.topics.checkin, app.topics.checkins)
            return publish(topic, payload, qos, retain)

        # A kiosk at a counter has served customers before the rush: the first one's answer
        # has told it that its backend takes batches (and the subscriber is done with (a)).
        app.inbox.put(CodeRead("LOY-FIRST01", "serial", time.time()))
        wait_for(lambda: app.checkins_recorded == 1 and app.outbox.depth == 0, timeout=60,
                 what="the first customer answered")
        app.link.publish = counting  # type: ignore[method-assign]
        start = time.perf_counter()
        for k in range(n):
            while app.inbox.scans_waiting >= SCAN_LANE:  # a fast scanner that drops no scan
                time.sleep(0.0002)
            app.inbox.put(CodeRead(f"LOY-B{k:07d}", "serial", time.time()))
        wait_for(lambda: app.checkins_recorded == n + 1 and app.outbox.depth == 0,
                 timeout=600, what="the rush delivered")
        elapsed = time.perf_counter() - start
        if app.scans_not_taken:
            raise RuntimeError(f"{app.scans_not_taken} scans were not taken")
        return elapsed, messages
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
    config = _config(root, broker, n)
    # It talked to its backend before the outage, and heard that it takes batches.
    (root / BATCHES_FILE).write_bytes(backend_identity(config))
    start = time.perf_counter()
    kiosk = RunningKiosk(config).start()
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
            subscriber = Subscriber(broker, protocol.checkins_of_all_kiosks("loyalty"))
            a = raw_paho(broker, n)
            b, messages = kiosk_rush(root / "rush", broker, n, display)
            per_message = max(1, round(n / messages))
            a2 = raw_paho(broker, n, per_message)
            c = kiosk_backlog(root / "backlog", broker, backlog)
            subscriber.close()
            backend = Subscriber(broker, str(root / "ledger.db"), BACKEND)
            d = kiosk_backlog(root / "ledger", broker, backlog)
            backend.close()
        finally:
            broker.stop()
    label = "set_tcp_nodelay true" if nodelay else "mosquitto defaults"
    print(f"broker: {label}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  (a) raw paho QoS 1, pipelined     {n:>7} msgs  {a:7.2f} s  {n / a:8.0f} msg/s")
    print(f"  (b) kiosk rush: commit + ack      {n:>7} scans {b:7.2f} s  {n / b:8.0f} /s"
          f"   (b)/(a) = {a / b:.2f}  [target >= 0.5]  display: {display}")
    print(f"      in {messages} messages ({n / messages:.1f} check-ins a message)")
    print(f"  (a2) raw paho, {per_message:>3} check-ins a msg {n:>7} c-ins {a2:7.2f} s  "
          f"{n / a2:8.0f} /s   (b)/(a2) = {a2 / b:.2f}  (the same batches, no kiosk)")
    print(f"  (c) kiosk backlog replay, ack     {backlog:>7} rows  {c:7.2f} s  "
          f"{backlog / c:8.0f} /s   [target <= 30 s]")
    print(f"  (d) (c), reference backend+ledger {backlog:>7} rows  {d:7.2f} s  "
          f"{backlog / d:8.0f} /s")


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
