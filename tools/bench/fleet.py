"""Staff's fan-out at fleet size: a config to 1,000 and 10,000 simulated kiosks, and the
fleet summary, each against the raw broker doing the same fan-out in the same run.

    .venv/bin/python tools/bench/fleet.py [--sizes 1000,10000] [--skip-phased] [--summary-only]

The kiosks are :class:`kiosk.testing.fleet.SimulatedFleet` virtual kiosks (the kiosk's
own guard, sequence book, shadow and report; state folders in ``/dev/shm``), 500 to an
MQTT connection, on a private mosquitto without persistence. Measured:

- **config, all at once**: staff sign and send one desired config per kiosk (retained,
  QoS 1, as ``kioskctl config apply --all``) until every kiosk has reported the new
  version; against **raw**: one retained QoS 1 message per kiosk topic to the same
  subscriptions, each answered by a retained QoS 1 message, until all answers are back;
- **config, phased**: the same through a rollout (canary 10, then 10 %, 50 %, 100 %);
- **summary**, three ways, each as ``kioskctl summary`` does it: from the **fleet service**
  (``kiosk-fleet``, run here in a thread with its database in ``/dev/shm``: a fresh
  connection, one question, the answer), from the **retained messages a summary needs**
  (no fleet service: status, state, ``config/version``, health, enroll — not the reported
  configs) and, for comparison, from **every retained message** staff follow (what
  ``kioskctl`` read for a summary before). Each against **raw**: a fresh connection
  receiving the same retained messages, undecoded (for the service: the small view's).

Targets: 1,000 kiosks reported in <= 10 s all at once; summary of 10,000 in <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt

from kiosk.mqtt import protocol
from kiosk.mqtt.client import connect_now, make_client
from kiosk.mqtt.settings import MqttSettings
from kiosk.staff import asking
from kiosk.staff import fleet as staff_fleet
from kiosk.staff.client import StaffClient
from kiosk.staff.fleetd import FleetService, FleetSettings, ServiceSection
from kiosk.staff.issuer import Issuer
from kiosk.staff.rollout import Rollouts, Rule
from kiosk.staff.settings import KeysSection
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


def raw_retained(broker: MqttSettings, expected: int, view: list[str]) -> float:
    """A fresh connection receiving ``expected`` retained messages of ``view``, undecoded."""
    received = [0]
    done = threading.Event()

    def count(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        received[0] += 1
        if received[0] >= expected:
            done.set()

    started = time.perf_counter()
    client = make_client(broker, f"raw-view-{time.monotonic_ns()}", on_message=count)
    connect_now(client)
    client.subscribe([(topic, 1) for topic in view])
    done.wait(120)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def summary_time(broker: MqttSettings, view: list[str] | None) -> tuple[float, int, int]:
    """A fresh staff connection hearing ``view`` until the summary is computed; (seconds,
    kiosks, messages)."""
    started = time.perf_counter()
    client = StaffClient(broker, view).connect()
    client.settle()
    sites = summarise(staff_fleet.survey(client))
    elapsed = time.perf_counter() - started
    messages = client.received
    client.close()
    return elapsed, sites[-1].kiosks, messages


def service_summary_time(broker: MqttSettings) -> tuple[float, int]:
    """A fresh connection asking the fleet service for the summary; (seconds, kiosks)."""
    started = time.perf_counter()
    client = StaffClient(broker, []).connect()
    answer = asking.ask(client, "summary")
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, answer["sites"][-1]["kiosks"]


class ServiceThread:
    """The fleet service in a thread of this process, with its own database."""

    def __init__(self, broker: MqttSettings, folder: Path) -> None:
        settings = FleetSettings(mqtt=broker, keys=KeysSection(dir=str(folder / "keys")),
                                 service=ServiceSection(db=str(folder / "fleet.db")))
        self.service = FleetService(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.service.run, args=(self._stop,),
                                        daemon=True)

    def __enter__(self) -> FleetService:
        self._thread.start()
        return self.service

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def wait_heard(service: FleetService, count: int, timeout: float = 300.0) -> None:
    """Until the service has heard a config version from every kiosk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        heard = sum(1 for topic in list(service.latest)
                    if topic.endswith(protocol.Leaf.CONFIG_VERSION))
        if heard >= count:
            return
        time.sleep(0.2)
    raise TimeoutError("the fleet service never heard the whole fleet")


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
    parser.add_argument("--summary-only", action="store_true", help="no config fan-out rows")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir="/dev/shm"))
    broker_proc = Mosquitto(root / "broker", persistence=False, max_queued=1_000_000)
    broker_proc.start()
    broker = MqttSettings(host=broker_proc.host, port=broker_proc.port)
    signer = Signer.generate()
    issuer = Issuer(signer)
    print_header()
    try:
        for count in (int(size) for size in args.sizes.split(",")):
            raw = 0.0 if args.summary_only else raw_fan_out(broker, count)
            sized = replace(broker, topic_prefix=f"fleet{count}")  # no other size's kiosks
            started = time.perf_counter()
            with SimulatedFleet(sized, root / f"fleet-{count}", count,
                                (public_key_text(signer.public),),
                                sites=max(1, count // 50),
                                per_connection=PER_CONNECTION) as simulated:
                print_row(count, "fleet start (all reported)", time.perf_counter() - started,
                          None)
                wait_reported(sized, count)
                small_view = protocol.summary_view(sized.topic_prefix)
                summary, heard, small = summary_time(sized, small_view)
                assert heard == count, f"summary heard {heard} of {count}"
                print_row(count, f"summary, retained (small view): {small} msgs", summary,
                          raw_retained(sized, small, small_view))
                summary, heard, messages = summary_time(sized, None)
                assert heard == count, f"summary heard {heard} of {count}"
                print_row(count, f"summary, retained (every msg): {messages} msgs", summary,
                          raw_retained(sized, messages, protocol.staff_view(sized.topic_prefix)))
                with ServiceThread(sized, root / f"service-{count}") as service:
                    wait_heard(service, count)
                    asked, heard = service_summary_time(sized)
                    assert heard == count, f"the service summarised {heard} of {count}"
                    print_row(count, "summary, fleet service", asked,
                              raw_retained(sized, small, small_view))
                if not args.summary_only:
                    print_row(count, "config to all at once",
                              apply_all(sized, issuer, count, 1), raw)
                if not (args.skip_phased or args.summary_only):
                    print_row(count, "config phased (10, 10/50/100 %)",
                              phased(sized, issuer, count, 2), raw)
                if not args.summary_only:
                    assert set(simulated.versions().values()) == {1 if args.skip_phased
                                                                   else 2}
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
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


def print_header() -> None:
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'kiosks':>7}  {'what':<44} {'ours s':>8} {'raw s':>8} {'ratio':>7}")


def print_row(count: int, what: str, ours: float, raw: float | None) -> None:
    ratio = f"{ours / raw:6.1f}x" if raw else ""
    print(f"{count:>7}  {what:<44} {ours:8.2f} {raw or 0:8.2f} {ratio:>7}", flush=True)


if __name__ == "__main__":
    main()
