"""The backend on the broker: a stolen kiosk certificate cannot mint points, and several
instances sharing the check-ins credit each exactly once while they are killed at random."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from backend import Ledger, LoyaltyBackend
from backend.rules import load_rules
from kiosk.testing.broker import Mosquitto
from kiosk.testing.harness import wait_for
from tests.system.senders import Sender, deliver_all

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "backend-rules.toml"
KILLS = 5


def test_a_copied_kiosk_certificate_credits_at_most_the_visit_limit(mosquitto, ledger_where):
    ledger = Ledger(ledger_where, load_rules(RULES))  # one credited visit per 60 minutes
    service = LoyaltyBackend(mosquitto.host, mosquitto.port, ledger)
    service.start()
    thief = Sender(mosquitto.host, mosquitto.port, "kiosk-copied")
    try:
        assert service.connected.wait(10)
        started = time.monotonic()
        for _ in range(200):
            thief.check_in("LOY-ALICE01")
        deliver_all([thief], timeout=120)
        took = time.monotonic() - started
        words = Counter(word for acks in thief.acks.values() for word in acks)
        assert words == {"credited": 1, "duplicate": 199}, words  # all acknowledged
        assert ledger.balance("LOY-ALICE01") == 35  # 10 for the visit, 25 welcome bonus
        assert ledger.counts()["limited"] == service.limited == 199
        assert len(ledger.visits("kiosk-copied")) == 200  # recorded, for staff to see
        print(f"200 visits answered in {took:.1f} s, 1 credited")
    finally:
        thief.close()
        service.stop()
        ledger.close()


class Instances:
    """Backend instances as processes of their own (``kiosk backend``), sharing one group."""

    def __init__(self, broker: Mosquitto, url: str, logs: Path, count: int) -> None:
        self.broker, self.url, self.logs = broker, url, logs
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.kills = 0
        for number in range(count):
            self.start(number)

    def log(self, number: int) -> Path:
        return self.logs / f"backend-{number}.log"

    def start(self, number: int) -> None:
        with self.log(number).open("ab") as out:
            self.procs[number] = subprocess.Popen(
                [sys.executable, "-m", "kiosk", "backend", "--host", self.broker.host,
                 "--port", str(self.broker.port), "--db", self.url, "--share-group", "ledger",
                 "--client-id", f"backend-{number}"], stdout=out, stderr=subprocess.STDOUT)

    def wait_subscribed(self, number: int, times: int = 1) -> None:
        wait_for(lambda: self.log(number).read_text().count("subscribed:") >= times,
                 timeout=60, what=f"backend {number} subscribed")

    def kill(self, number: int) -> None:
        os.kill(self.procs[number].pid, signal.SIGKILL)
        self.procs[number].wait()
        self.kills += 1

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_three_instances_killed_at_random_credit_every_check_in_once(mosquitto, postgres_url,
                                                                     tmp_path):
    Ledger(postgres_url).close()  # the schema, made once before the rush
    instances = Instances(mosquitto, postgres_url, tmp_path, 3)
    kiosks = [Sender(mosquitto.host, mosquitto.port, f"kiosk-{k}", site=f"shop-{k % 2}")
              for k in range(4)]
    rng = random.Random(15)
    stop_killing = threading.Event()

    def killer() -> None:  # kill -9 one instance at random, start it again a moment later
        while not stop_killing.wait(rng.uniform(0.3, 1.0)) or instances.kills < KILLS:
            victim = rng.randrange(3)
            instances.kill(victim)
            time.sleep(rng.uniform(0.1, 0.6))
            instances.start(victim)

    typed: Counter[str] = Counter()
    event_ids: set[str] = set()
    try:
        for number in range(3):
            instances.wait_subscribed(number)
        chaos = threading.Thread(target=killer)
        chaos.start()
        try:
            for _ in range(150):  # the rush: 600 check-ins from 4 kiosks
                for kiosk in kiosks:
                    member = f"LOY-M{rng.randrange(40):04d}"
                    event_ids.add(kiosk.check_in(member).event_id)
                    typed[member] += 1
                    # impatient kiosks: what is not answered within 0.3 s goes again,
                    # often to another instance while the first still has it
                    kiosk.resend_unacknowledged(0.3)
                time.sleep(0.03)  # about 100 check-ins a second, for some seconds
            time.sleep(2)  # kills go on while the backlog drains
        finally:
            stop_killing.set()
            chaos.join()
        deliver_all(kiosks, timeout=180)
    finally:
        for kiosk in kiosks:
            kiosk.close()
        instances.stop()
    assert instances.kills >= KILLS
    ledger = Ledger(postgres_url)
    try:
        visits = [v for k in kiosks for v in ledger.visits(k.device_id)]
        assert len(visits) == len(event_ids) == 600  # typed = recorded, none twice
        assert {event_id for event_id, *_ in visits} == event_ids
        assert ledger.counts()["credited"] == 600
        for member, count in typed.items():
            assert ledger.balance(member) == 10 * count, member
            kinds = Counter(e["kind"] for e in ledger.entries(member, limit=10_000))
            assert kinds["visit"] == count, member  # one credit entry per check-in
    finally:
        ledger.close()
    credited_twice = [e for k in kiosks for e, acks in k.acks.items()
                      if acks.count("credited") > 1]
    assert credited_twice == []
    again = sum("duplicate" in acks for k in kiosks for acks in k.acks.values())
    print(f"600 check-ins from 4 kiosks, 3 instances, {instances.kills} kill -9s: 600 "
          f"credited once ({again} of them delivered again and answered duplicate)")



def test_an_instance_gone_for_good_keeps_its_share_until_it_is_retired(mosquitto, tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    a, b = (LoyaltyBackend(mosquitto.host, mosquitto.port, ledger, client_id=f"backend-{n}",
                           share_group="ledger") for n in "ab")
    kiosk = Sender(mosquitto.host, mosquitto.port, "kiosk-1")
    try:
        for instance in (a, b):
            instance.start()
            assert instance.connected.wait(10)
        a.stop()  # its persistent session stays, a member of the group
        for n in range(10):
            kiosk.check_in(f"LOY-M{n:04d}")
        wait_for(lambda: b.received >= 1, 10, "b's share")
        time.sleep(1)
        assert 0 < kiosk.unacknowledged() < 10  # queued for the absent a: late, not lost
        assert a.retire()
        deliver_all([kiosk], timeout=30, resend_s=0.5)  # the kiosk sends those again
        for n in range(10):
            kiosk.check_in(f"LOY-N{n:04d}")
        wait_for(lambda: kiosk.unacknowledged() == 0, 10, "b answers everything at once")
        assert b.received == 20 and ledger.counts()["credited"] == 20
    finally:
        kiosk.close()
        b.stop()
        ledger.close()
