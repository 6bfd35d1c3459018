"""Soak: the kiosk, the backend and the broker killed again and again while customers scan
over a flapping link.

    .venv/bin/python tools/soak.py [--kills 200] [--checkins 10000] [--seed 1]

A private mosquitto **without persistence** (a kill forgets every queue, session and
subscription), the reference backend (``kiosk backend``) in its own process, and the
real ``kiosk run`` daemon reaching the broker through a fault proxy that blackholes,
resets and refuses the link at random. A scanner types distinct member codes into the
simulated serial reader (100 a second). At random moments, 1 to 3 s apart, one of them
is SIGKILLed and started again: the kiosk (half the time), the backend or the broker.
After the kills the last daemon runs until ``--checkins`` check-ins have been committed
in all. Then the link heals, the outbox drains, and every check-in the kiosk ever
committed must be in the ledger, none twice, and no typed code may have become two
check-ins. Codes typed into the reader of a kiosk that was being killed never became
a check-in (nobody was told anything): the line says how many. Prints one line; exit 0
only when nothing was lost.
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from backend import Ledger
from kiosk.config import Config, OutboxSection
from kiosk.testing.broker import Mosquitto
from kiosk.testing.daemon import start_daemon
from kiosk.testing.faultproxy import FaultProxy
from kiosk.testing.harness import sim_config, wait_for

DEVICE = "soak-1"


def committed(state: Path, ledger: Ledger) -> set[str]:
    """Check-ins the daemon has committed so far: in its outbox, or credited."""
    try:
        with sqlite3.connect(state / "kiosk.db") as conn:
            waiting = {row[0] for row in conn.execute("SELECT event_id FROM outbox")}
    except sqlite3.Error:
        waiting = set()
    return waiting | {event_id for event_id, *_ in ledger.visits(DEVICE)}


class Scanner(threading.Thread):
    """Types distinct codes into whatever serial link the running daemon has made."""

    def __init__(self, link: Path) -> None:
        super().__init__(name="scanner", daemon=True)
        self.link, self.typed = link, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with open(self.link, "w") as reader:
                    while not self.stop.wait(0.01):
                        reader.write(f"LOY-S{self.typed:07d}\r")
                        reader.flush()
                        self.typed += 1
            except OSError:
                time.sleep(0.05)  # the daemon died with its pty: wait for the next one


def start_backend(broker: Mosquitto, ledger: Path) -> subprocess.Popen[bytes]:
    """The reference backend in its own process, as a shop runs it (so it can be killed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "kiosk.cli", "backend", "--host", broker.host,
         "--port", str(broker.port), "--db", str(ledger)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_up(config: Config, path: Path, state: Path) -> subprocess.Popen[bytes]:
    """Start the daemon and wait until its serial reader is there."""
    began = time.time()
    daemon = start_daemon(config, path)
    link = state / "serial"
    wait_for(lambda: link.is_symlink() and link.lstat().st_mtime >= began, timeout=60,
             what="the daemon's serial reader")
    return daemon


def flap(proxy: FaultProxy, rng: random.Random, stop: threading.Event) -> None:
    """Break the link now and then: silence, reset, refusal; heal in between."""
    while not stop.wait(rng.uniform(1.0, 4.0)):
        fault = rng.choice(["blackhole", "reset", "refuse", "drop"])
        if fault == "drop":
            proxy.drop("down")
        else:
            getattr(proxy, fault)()
        stop.wait(rng.uniform(0.5, 3.0))
        proxy.heal()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--checkins", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "broker", persistence=False)
        broker.start()
        ledger = Ledger(root / "ledger.db")
        backend = start_backend(broker, root / "ledger.db")
        proxy = FaultProxy(broker.port).start()
        state = root / "kiosk"
        config = sim_config(state, proxy.port, device_id=DEVICE,
                            outbox=OutboxSection(ack_timeout_s=3.0))
        path = root / "kiosk.toml"
        scanner = Scanner(state / "serial")
        stop_flapping = threading.Event()
        flapper = threading.Thread(target=flap, args=(proxy, rng, stop_flapping), daemon=True)
        flapper.start()
        ever: set[str] = set()
        kills = {"kiosk": 0, "backend": 0, "broker": 0}
        daemon = start_up(config, path, state)
        scanner.start()
        try:
            for _ in range(args.kills):
                time.sleep(rng.uniform(1.0, 3.0))
                victim = rng.choice(["kiosk", "kiosk", "backend", "broker"])
                kills[victim] += 1
                if victim == "kiosk":
                    daemon.send_signal(signal.SIGKILL)
                    daemon.wait(10)
                    ever |= committed(state, ledger)
                    daemon = start_up(config, path, state)
                elif victim == "backend":
                    backend.send_signal(signal.SIGKILL)
                    backend.wait(10)
                    backend = start_backend(broker, root / "ledger.db")
                else:
                    broker.kill()
                    broker.start()
            wait_for(lambda: len(ever | committed(state, ledger)) >= args.checkins,
                     timeout=3600, what=f"{args.checkins} check-ins committed")
            scanner.stop.set()
            time.sleep(2.0)  # the last codes reach the reader
            stop_flapping.set()
            flapper.join()
            proxy.heal()
            wait_for(lambda: not _outbox(state), timeout=600, what="the outbox drained")
            ever |= committed(state, ledger)
            wait_for(lambda: ever <= {e for e, *_ in ledger.visits(DEVICE)}, timeout=60,
                     what="every committed check-in credited")
        except TimeoutError as exc:
            print(f"soak: FAILED: {exc}")
            return 1
        finally:
            scanner.stop.set()
            for process in (daemon, backend):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
            stop_flapping.set()
            proxy.stop()
            broker.stop()
        visits = ledger.visits(DEVICE)
        ledger.close()
    credited = {event_id for event_id, *_ in visits}
    members = [member for _, _, member, _ in visits]
    lost = len(ever - credited)
    twice = len(members) - len(set(members))  # one typed code, two check-ins
    verdict = "PASSED" if lost == 0 and twice == 0 else "FAILED"
    print(f"soak: {verdict}: {args.kills} kills (kiosk {kills['kiosk']}, backend "
          f"{kills['backend']}, broker {kills['broker']}), {scanner.typed} codes typed, "
          f"{len(ever)} check-ins committed, {len(credited)} credited, {lost} lost, "
          f"{twice} credited twice, {scanner.typed - len(ever)} typed into a dying reader, "
          f"{time.monotonic() - began:.0f} s")
    return 0 if verdict == "PASSED" else 1


def _outbox(state: Path) -> int:
    try:
        with sqlite3.connect(state / "kiosk.db") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return -1


if __name__ == "__main__":
    sys.exit(main())
