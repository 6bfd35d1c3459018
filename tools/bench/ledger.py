"""The reference backend's throughput against a raw QoS 1 subscriber on the same broker.

    nice -n 10 .venv/bin/python tools/bench/ledger.py [--n 20000] [--kiosks 4] [--runs 3]

(a) raw: a paho subscriber in its own process takes N check-ins published as a rush by
    ``--kiosks`` kiosk connections (QoS 1, pipelined), timed from the first publish
    until it has the last one. It credits nothing and answers nothing: the broker's
    and the client library's ceiling.
(a') the same subscriber answering each check-in with an acknowledgement (crediting
    nothing), timed until the kiosks have the last answer: the round trip's ceiling.
(b) the backend: ``kiosk backend`` processes (a shared subscription group, as a chain
    runs them) take the same rush, timed from the first publish until the kiosks have
    every check-in's acknowledgement, i.e. every check-in credited in the ledger and
    committed. Runs: 1 instance on PostgreSQL, 2 instances on PostgreSQL, 1 instance
    on SQLite.
Each backend run is anchored to the raw subscriber measured just before and just after
it (their mean): on a machine shared with other work, the load moves within a minute,
so a ratio to one raw run made earlier says more about the load than the backend.
Each run's ledger is fresh. PostgreSQL is a private server with fsync on (commits are
durable, as in production); the broker runs without persistence (as outbox.py says,
the test broker's save-after-every-change would be the bottleneck).
Prints check-ins/s, the ratio to (a), and the cost per check-in: backend CPU (user +
system, all instances) beside the raw subscriber's own CPU per check-in (a ratio the
load hardly moves), PostgreSQL's CPU (every server process), and statements sent to
the database (BEGIN and COMMIT included).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.mqtt import protocol
from kiosk.testing.broker import Mosquitto
from kiosk.testing.harness import wait_for
from kiosk.testing.postgres import PostgresServer

TICK = os.sysconf("SC_CLK_TCK")
SUBSCRIBER = """
import json, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from kiosk.mqtt import protocol
n, got, first, answer = int(sys.argv[4]), 0, None, sys.argv[5] == "answer"
STATUS = protocol.MemberStatus("Bench", 10, "Bronze", 40, 0.2)
done = threading.Event()
def on_message(c, _u, m):
    global got, first
    first = first or time.monotonic()
    got += 1
    if answer:
        body = json.loads(m.payload)
        c.publish(protocol.reply_topic_for(m.topic), protocol.encode_reply(
            body["event_id"], body["member_id"], STATUS, protocol.Ack.CREDITED), qos=1)
    if got == n:
        done.set()
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-subscriber",
                     protocol=mqtt.MQTTv5)
client.max_inflight_messages_set(1000)
subscribed = threading.Event()
client.on_subscribe = lambda *_: subscribed.set()
client.on_message = on_message
client.connect(sys.argv[1], int(sys.argv[2]))
client.subscribe(sys.argv[3], qos=1)
client.loop_start()
subscribed.wait(10)
print("subscribed", flush=True)
done.wait(600)
print(f"done {time.monotonic()}", flush=True)
sys.stdin.read()  # answers still leaving: stay until the bench has them
"""


class Kiosks:
    """``count`` kiosk connections publishing a rush and counting acknowledgements."""

    def __init__(self, broker: Mosquitto, count: int) -> None:
        self.acked = 0
        self.last_ack = 0.0
        self._lock = threading.Lock()
        self.clients = []
        for k in range(count):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-kiosk-{k}",
                                 protocol=mqtt.MQTTv5)
            client.max_inflight_messages_set(200)
            client.max_queued_messages_set(0)
            topics = protocol.Topics("loyalty", f"shop-{k % 3}", f"kiosk-{k}")
            client.on_message = self._on_reply
            client.connect(broker.host, broker.port)
            client.subscribe(topics.reply, qos=1)
            client.loop_start()
            self.clients.append((client, topics))

    def _on_reply(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        # A reply message carries one answer, or a batch's answers to this kiosk: each
        # names its event once (counted, not decoded: the bench's kiosks share the cores)
        answers = m.payload.count(b'"event_id"')
        with self._lock:
            self.acked += answers
            self.last_ack = time.monotonic()

    def rush(self, n: int, members: int = 2000) -> float:
        """Publish ``n`` check-ins round-robin over the kiosks; returns the start time."""
        rng = random.Random(15)
        payloads = []
        for i in range(n):
            client, topics = self.clients[i % len(self.clients)]
            checkin = CheckIn(uuid7(), topics.device_id, "bench", i, time.time(),
                              f"LOY-B{rng.randrange(members):06d}", "camera")
            payloads.append((client, topics.checkin, protocol.encode_checkin(checkin)))
        started = time.monotonic()
        for client, topic, payload in payloads:
            client.publish(topic, payload, qos=1)
        return started

    def close(self) -> None:
        for client, _ in self.clients:
            client.loop_stop()
            client.disconnect()


def _says_subscribed(log: Path) -> bool:
    return "subscribed:" in log.read_text()


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster and its children (one per connection, and the background workers)."""
    master = int((server.data / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return [master, *children]


def raw(broker: Mosquitto, n: int, kiosks: int, answer: bool) -> tuple[float, float]:
    """The raw subscriber's rate: until it has the last check-in, or (``answer``: it sends
    each an acknowledgement, crediting nothing) until the kiosks have the last answer;
    and its CPU per check-in in ms."""
    proc = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, broker.host, str(broker.port),
                             protocol.checkins_of_all_kiosks("loyalty"), str(n),
                             "answer" if answer else "count"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "subscribed"
    senders = Kiosks(broker, kiosks)
    cpu_before = cpu_s([proc.pid])
    started = senders.rush(n)
    ended = float(proc.stdout.readline().split()[1])
    if answer:
        wait_for(lambda: senders.acked >= n, timeout=900, what=f"{n} answers")
        ended = senders.last_ack
    cpu = cpu_s([proc.pid]) - cpu_before
    proc.stdin.close()
    proc.wait()
    senders.close()
    return n / (ended - started), 1000 * cpu / n


def backend(broker: Mosquitto, where: str, instances: int, n: int, kiosks: int,
            server: PostgresServer | None, folder: Path) -> dict[str, float]:
    # A group of its own per run: mosquitto keeps handing a share of the group's messages
    # to a persistent session that is gone (an earlier run's instance), queued for it.
    group = f"bench{time.monotonic_ns()}"
    logs = [folder / f"{group}-{i}.log" for i in range(instances)]
    procs = []
    for i, log in enumerate(logs):
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "kiosk", "backend", "--host", broker.host, "--port",
                 str(broker.port), "--db", where, "--share-group", group,
                 "--client-id", f"{group}-{i}"],
                stdout=out, stderr=subprocess.STDOUT))
    for log in logs:
        wait_for(partial(_says_subscribed, log), timeout=60, what=f"{log.name} subscribed")
    senders = Kiosks(broker, kiosks)
    pg = postgres_pids(server) if server else []
    cpu_before, pg_before = cpu_s([p.pid for p in procs]), cpu_s(pg)
    started = senders.rush(n)
    wait_for(lambda: senders.acked >= n, timeout=900, what=f"{n} acknowledgements")
    took = senders.last_ack - started
    cpu, pg_cpu = cpu_s([p.pid for p in procs]) - cpu_before, cpu_s(pg) - pg_before
    senders.close()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    statements = 0
    for proc, log in zip(procs, logs, strict=True):
        proc.wait(60)
        line = next(x for x in log.read_text().splitlines() if "statements to the" in x)
        statements += int(line.split(" statements to the")[0].rsplit(" ", 1)[1])
    return {"rate": n / took, "cpu_ms": 1000 * cpu / n, "pg_ms": 1000 * pg_cpu / n,
            "statements": statements / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="check-ins per run")
    parser.add_argument("--kiosks", type=int, default=4, help="kiosk connections")
    parser.add_argument("--runs", type=int, default=1, help="rounds of every measurement")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still clean up (the finally)
    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "broker", persistence=False)
        broker.start()
        server = PostgresServer(durable=True)
        try:
            server.start()
            for run in range(1, args.runs + 1):
                print(f"run {run}, load average {os.getloadavg()[0]:.1f}", flush=True)
                echo, _ = raw(broker, args.n, args.kiosks, answer=True)
                base, base_cpu = raw(broker, args.n, args.kiosks, answer=False)
                print(f"(a) raw QoS 1 subscriber: {base:8.0f} check-ins/s, its CPU "
                      f"{base_cpu:.3f} ms per check-in", flush=True)
                print(f"(a') raw subscriber answering each, crediting nothing: {echo:8.0f} "
                      f"check-ins/s = {echo / base:.2f}x raw", flush=True)
                runs = [("PostgreSQL, 1 instance ", 1, True),
                        ("PostgreSQL, 2 instances", 2, True), ("SQLite, 1 instance     ", 1, False)]
                for label, count, on_pg in runs:
                    where = server.create_database() if on_pg else str(root / f"l{run}{count}.db")
                    got = backend(broker, where, count, args.n, args.kiosks,
                                  server if on_pg else None, root)
                    after, after_cpu = raw(broker, args.n, args.kiosks, answer=False)
                    anchor = (base + after) / 2
                    print(f"(b) {label}: {got['rate']:8.0f} check-ins/s = "
                          f"{got['rate'] / anchor:.2f}x raw ({anchor:.0f}/s around it); per "
                          f"check-in: backend CPU {got['cpu_ms']:.3f} ms "
                          f"({got['cpu_ms'] / ((base_cpu + after_cpu) / 2):.1f}x the raw "
                          f"subscriber's), PostgreSQL CPU {got['pg_ms']:.3f} ms, "
                          f"{got['statements']:.3f} statements", flush=True)
                    base, base_cpu = after, after_cpu
        finally:
            server.remove()
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
