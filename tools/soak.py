"""Soak: the real daemon killed again and again while customers scan over a flapping link.

    .venv/bin/python tools/soak.py [--kills 200] [--checkins 10000] [--seed 1]

A private mosquitto, the reference backend, and the real ``kiosk run`` daemon
reaching the broker through a fault proxy that blackholes, resets and refuses
the link at random. A scanner types distinct member codes into the simulated
serial reader (100 a second); the daemon is SIGKILLed at random moments, 1 to
3 s after it came up, and started again. After the kills the last daemon runs
until ``--checkins`` check-ins have been committed in all. Then the link heals,
the daemon drains its outbox, and every check-in it ever committed must be in
the ledger, and no typed code may have become two check-ins. Prints one line;
exit 0 only when nothing was lost.
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

from backend import Ledger, LoyaltyBackend
from kiosk.config import Config
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
        broker = Mosquitto(root / "broker")
        broker.start()
        ledger = Ledger(root / "ledger.db")
        backend = LoyaltyBackend(broker.host, broker.port, ledger)
        backend.start()
        proxy = FaultProxy(broker.port).start()
        state = root / "kiosk"
        config = sim_config(state, proxy.port, device_id=DEVICE)
        path = root / "kiosk.toml"
        scanner = Scanner(state / "serial")
        stop_flapping = threading.Event()
        flapper = threading.Thread(target=flap, args=(proxy, rng, stop_flapping), daemon=True)
        flapper.start()
        ever: set[str] = set()
        daemon: subprocess.Popen[bytes] | None = None
        try:
            for kill in range(args.kills + 1):
                daemon = start_up(config, path, state)
                if kill == 0:
                    scanner.start()
                if kill == args.kills:
                    break
                time.sleep(rng.uniform(1.0, 3.0))
                daemon.send_signal(signal.SIGKILL)
                daemon.wait(10)
                ever |= committed(state, ledger)
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
            if daemon is not None and daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)
            stop_flapping.set()
            proxy.stop()
            backend.stop()
            broker.stop()
        visits = ledger.visits(DEVICE)
        ledger.close()
    credited = {event_id for event_id, *_ in visits}
    members = [member for _, _, member, _ in visits]
    lost = len(ever - credited)
    twice = len(members) - len(set(members))  # one typed code, two check-ins
    verdict = "PASSED" if lost == 0 and twice == 0 else "FAILED"
    print(f"soak: {verdict}: {args.kills} kills, {scanner.typed} codes typed, "
          f"{len(ever)} check-ins committed, {len(credited)} credited, {lost} lost, "
          f"{twice} credited twice, "
          f"{backend.duplicates} duplicate deliveries absorbed, "
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
