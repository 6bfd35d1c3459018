"""Staff's fan-out at fleet size: a config to 1,000 and 10,000 simulated kiosks, and the
fleet summary, each against the raw broker doing the same fan-out in the same run.

    .venv/bin/python tools/bench/fleet.py [--sizes 1000,10000] [--skip-phased]

The kiosks are :class:`kiosk.testing.fleet.SimulatedFleet` virtual kiosks (the kiosk's
own guard, sequence book, shadow and report; state folders in ``/dev/shm``), 500 to an
MQTT connection, on a private mosquitto without persistence. Measured:

- **config, all at once**: staff sign and send one desired config per kiosk (retained,
  QoS 1, as ``kioskctl config apply --all``) until every kiosk has reported the new
  version; against **raw**: one retained QoS 1 message per kiosk topic to the same
  subscriptions, each answered by a retained QoS 1 message, until all answers are back;
- **config, phased**: the same through a rollout (canary 10, then 10 %, 50 %, 100 %);
- **summary**: a fresh staff connection until ``kioskctl summary``'s table is computed
  (retained messages of every kiosk received and settled, read, summarised); against
  **raw**: a fresh connection receiving the same retained messages, undecoded.

Targets: 1,000 kiosks reported in <= 10 s all at once; summary of 10,000 in <= 2 s.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from kiosk.mqtt import protocol
from kiosk.mqtt.client import connect_now, make_client
from kiosk.mqtt.settings import MqttSettings
from kiosk.staff import fleet as staff_fleet
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import Issuer
from kiosk.staff.rollout import Rollouts, Rule
from kiosk.staff.summary import summarise
from kiosk.testing.broker import Mosquitto
from kiosk.testing.fleet import SimulatedFleet
from kiosk.trust.signing import Signer, public_key_text

PER_CONNECTION = 500


def raw_fan_out(broker: MqttSettings, count: int) -> float:
    """One retained message per kiosk topic, answered retained by a subscriber: seconds
    until every answer is back."""
    prefix = f"raw{time.monotonic_ns()}"
    heard = threading.Event()
    answers: set[str] = set()
    subscribed = threading.Semaphore(0)

    def answer(client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        client.publish(message.topic.replace("/desired", "/reported"), b"{}", qos=1, retain=True)

    def collect(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        answers.add(message.topic)
        if len(answers) == count:
            heard.set()

    kiosks = []
    for first in range(0, count, PER_CONNECTION):
        client = make_client(broker, f"{prefix}-k{first}", inflight=1000, on_message=answer,
                             on_subscribe=lambda *_: subscribed.release())
        connect_now(client)
        client.subscribe([(f"{prefix}/{i}/desired", 1)
                          for i in range(first, min(count, first + PER_CONNECTION))])
        kiosks.append(client)
    for _ in kiosks:
        subscribed.acquire(timeout=60)
    staff = make_client(broker, f"{prefix}-staff", inflight=1000, on_message=collect,
                        on_subscribe=lambda *_: subscribed.release())
    connect_now(staff)
    staff.subscribe(f"{prefix}/+/reported", 1)
    subscribed.acquire(timeout=60)
    started = time.perf_counter()
    for index in range(count):
        staff.publish(f"{prefix}/{index}/desired", b"x" * 600, qos=1, retain=True)
    heard.wait(600)
    elapsed = time.perf_counter() - started
    for client in [*kiosks, staff]:
        client.disconnect()
        client.loop_stop()
    return elapsed


def raw_retained(broker: MqttSettings, expected: int) -> float:
    """A fresh connection receiving every kiosk's retained messages, undecoded."""
    received = [0]
    done = threading.Event()

    def count(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        received[0] += 1
        if received[0] >= expected:
            done.set()

    started = time.perf_counter()
    client = make_client(broker, f"raw-view-{time.monotonic_ns()}", on_message=count)
    connect_now(client)
    client.subscribe([(topic, 1) for topic in protocol.staff_view(broker.topic_prefix)])
    done.wait(120)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def summary_time(broker: MqttSettings) -> tuple[float, int, int]:
    """A fresh staff connection until the summary is computed; (seconds, kiosks, messages)."""
    started = time.perf_counter()
    client = StaffClient(broker).connect()
    client.settle()
    sites = summarise(staff_fleet.survey(client))
    elapsed = time.perf_counter() - started
    messages = client.received
    client.close()
    return elapsed, sites[-1].kiosks, messages


def apply_all(broker: MqttSettings, issuer: Issuer, count: int, version: int) -> float:
    """Seconds from the first send until every kiosk reported config ``version``."""
    client = StaffClient(broker).connect()
    client.settle()
    kiosks = staff_fleet.survey(client)
    assert len(kiosks) == count, f"{len(kiosks)} of {count} kiosks heard"
    started = time.perf_counter()
    outcomes = staff_fleet.apply_config(client, issuer, kiosks,
                                        {"counter": {"cooldown_s": 10.0 + version}}, 600)
    elapsed = time.perf_counter() - started
    client.close()
    applied = sum(o["outcome"] == "applied" for o in outcomes.values())
    assert applied == count, f"{applied} of {count} applied"
    return elapsed


def phased(broker: MqttSettings, issuer: Issuer, count: int, version: int) -> float:
    """The same change through a rollout: canary 10, then 10 %, 50 %, 100 %."""
    client = StaffClient(broker).connect()
    client.settle()
    started = time.perf_counter()
    record = Rollouts(client, issuer, "bench").start(
        {"counter": {"cooldown_s": 10.0 + version}}, {"all": True}, 10, [10, 50, 100],
        Rule(max_bad_pct=1, min_seen=1, answer_s=120))
    elapsed = time.perf_counter() - started
    client.close()
    assert record.state == "done", record.reason
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--skip-phased", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir="/dev/shm"))
    broker_proc = Mosquitto(root / "broker", persistence=False, max_queued=1_000_000)
    broker_proc.start()
    broker = MqttSettings(host=broker_proc.host, port=broker_proc.port)
    signer = Signer.generate()
    issuer = Issuer(signer)
    rows: list[tuple[int, str, float, float | None]] = []
    try:
        for count in (int(size) for size in args.sizes.split(",")):
            raw = raw_fan_out(broker, count)
            started = time.perf_counter()
            with SimulatedFleet(broker, root / f"fleet-{count}", count,
                                (public_key_text(signer.public),),
                                sites=max(1, count // 50),
                                per_connection=PER_CONNECTION) as simulated:
                rows.append((count, "fleet start (all reported)", time.perf_counter() - started,
                             None))
                wait_reported(broker, count)
                summary, heard, messages = summary_time(broker)
                assert heard == count, f"summary heard {heard} of {count}"
                rows.append((count, f"summary ({messages} retained msgs)", summary,
                             raw_retained(broker, messages)))
                rows.append((count, "config to all at once", apply_all(broker, issuer, count, 1),
                             raw))
                if not args.skip_phased:
                    rows.append((count, "config phased (10, 10/50/100 %)",
                                 phased(broker, issuer, count, 2), raw))
                assert set(simulated.versions().values()) == {1 if args.skip_phased else 2}
        print_rows(rows)
    finally:
        broker_proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_reported(broker: MqttSettings, count: int, timeout: float = 300.0) -> None:
    """Until staff hear a config report from every virtual kiosk."""
    client = StaffClient(broker).connect()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client.settle()
            if sum(1 for leaves in client.kiosks().values()
                   if protocol.Leaf.CONFIG_REPORTED in leaves) >= count:
                return
        raise TimeoutError("the simulated fleet never reported in full")
    finally:
        client.close()


def print_rows(rows: list[tuple[int, str, float, float | None]]) -> None:
    print(f"{'kiosks':>7}  {'what':<36} {'ours s':>8} {'raw s':>8} {'ratio':>7}")
    for count, what, ours, raw in rows:
        ratio = f"{ours / raw:6.1f}x" if raw else ""
        print(f"{count:>7}  {what:<36} {ours:8.2f} {raw or 0:8.2f} {ratio:>7}", flush=True)


if __name__ == "__main__":
    main()
