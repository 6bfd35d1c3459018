"""Soak: the kiosk, the backend and the broker killed again and again while customers scan
over a flapping link.

    .venv/bin/python tools/soak.py [--kills 200] [--checkins 10000] [--seed 1] [--storage 0.3]

A private mosquitto **without persistence** (a kill forgets every queue, session and
subscription), the reference backend (``kiosk backend``) in its own process, and the
real ``kiosk run`` daemon reaching the broker through a fault proxy that blackholes,
resets and refuses the link at random. A scanner types distinct member codes into the
simulated serial reader (100 a second). At random moments, 1 to 3 s apart, one of them
is SIGKILLed and started again: the kiosk (half the time), the backend or the broker.
Before a share (``--storage``) of the kiosk's restarts its database is in trouble:
write-locked by another program for 6 to 12 s (longer than SQLite's busy timeout), its
file header zeroed (corrupt: the rows are salvaged page by page), or, when run as root,
its disk (a 64 MB tmpfs) full for 3 to 8 s. After the kills the last daemon runs until
``--checkins`` check-ins have been committed in all. Then the link heals, the outbox
drains, and every check-in the kiosk ever committed must be in the ledger, none twice,
and no typed code may have become two check-ins. Codes typed into the reader of a kiosk
that was being killed never became a check-in (nobody was told anything): the line says
how many. Prints one line; exit 0 only when nothing was lost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from backend import Ledger
from kiosk.config import Config, OutboxSection
from kiosk.testing.broker import Mosquitto
from kiosk.testing.daemon import to_toml
from kiosk.testing.faultproxy import FaultProxy
from kiosk.testing.harness import sim_config, wait_for

DEVICE = "soak-1"


def committed(state: Path, ledger: Ledger) -> set[str]:
    """Check-ins the daemon has committed so far: in its outbox, or credited."""
    waiting = _outbox(state)
    return (waiting or set()) | {event_id for event_id, *_ in ledger.visits(DEVICE)}


_said: set[str] = set()


def _outbox(state: Path) -> set[str] | None:
    """The event ids waiting in the daemon's outbox; None (and why, once) while unreadable."""
    try:
        with contextlib.closing(sqlite3.connect(state / "kiosk.db", timeout=5.0)) as conn:
            return {row[0] for row in conn.execute("SELECT event_id FROM outbox")}
    except sqlite3.Error as exc:
        if str(exc) not in _said:
            _said.add(str(exc))
            print(f"soak: outbox not readable now: {exc}", file=sys.stderr)
        return None


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


def start_up(config: Config, path: Path, devices: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start the daemon (its lines appended to ``log``) and wait until its serial reader is
    there."""
    began = time.time()
    path.write_text(to_toml(config))

    def spawn() -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "kiosk.cli", "run", "--config",
                                     str(path)], stdout=out, stderr=subprocess.STDOUT)

    daemon = spawn()
    link = devices / "serial"
    deadline = time.monotonic() + 60
    while not (link.is_symlink() and link.lstat().st_mtime >= began):
        if daemon.poll() is not None:  # it could not start (no room for a fresh database):
            time.sleep(1.0)            # started again, as systemd's Restart=on-failure does
            daemon = spawn()
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after 60 s waiting for the daemon's serial reader")
        time.sleep(0.05)
    return daemon


class StorageFaults:
    """Trouble for the state database, made just before the daemon starts."""

    def __init__(self, state: Path, disk: Path | None) -> None:
        self.db = state / "kiosk.db"
        self.disk = disk
        self.kinds = ["lock", "header"] + (["full"] if disk else [])
        self.made = {kind: 0 for kind in self.kinds}

    def make(self, kind: str, rng: random.Random) -> None:
        """Make ``kind`` now; it ends by itself (a timer) while the daemon starts and runs."""
        if not self.db.exists():
            return
        if kind == "lock":  # an operator's sqlite3 session writing, or a backup
            holder = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
            try:
                holder.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:  # e.g. a header zeroed before, hidden by the WAL
                print(f"soak: no lock made: {exc}", file=sys.stderr)
                holder.close()
                return

            def release() -> None:
                holder.execute("ROLLBACK")
                holder.close()
            threading.Timer(rng.uniform(6.0, 12.0), release).start()
            self.made[kind] += 1
            return
        self.made[kind] += 1
        if kind == "header":  # the rows are intact: salvage must find every one
            with open(self.db, "r+b") as file:
                file.write(bytes(100))
        else:
            assert self.disk is not None
            filler = self.disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 65536)
            os.close(fd)
            threading.Timer(rng.uniform(3.0, 8.0), lambda: filler.unlink(missing_ok=True)).start()

    def summary(self) -> str:
        return ", ".join(f"{count} {kind}" for kind, count in self.made.items())


@contextlib.contextmanager
def small_disk(root: Path) -> Iterator[Path | None]:
    """A 64 MB tmpfs a full disk can be made on (root only), or None."""
    mount = root / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)]).returncode:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


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
    parser.add_argument("--storage", type=float, default=0.3,
                        help="share of restarts made with the database in trouble")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, small_disk(Path(tmp)) as disk:
        root = Path(tmp)
        broker = Mosquitto(root / "broker", persistence=False)
        broker.start()
        ledger = Ledger(root / "ledger.db")
        backend = start_backend(broker, root / "ledger.db")
        proxy = FaultProxy(broker.port).start()
        state = (disk or root) / "kiosk"
        config = sim_config(root / "devices", proxy.port, device_id=DEVICE,
                            outbox=OutboxSection(ack_timeout_s=3.0))
        config = replace(config, kiosk=replace(config.kiosk, state_dir=str(state)))
        storage = StorageFaults(state, disk)
        path = root / "kiosk.toml"
        scanner = Scanner(root / "devices" / "serial")
        stop_flapping = threading.Event()
        flapper = threading.Thread(target=flap, args=(proxy, rng, stop_flapping), daemon=True)
        flapper.start()
        ever: set[str] = set()
        kills = {"kiosk": 0, "backend": 0, "broker": 0}
        daemon = start_up(config, path, root / "devices", root / "daemon.log")
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
                    if rng.random() < args.storage:
                        storage.make(rng.choice(storage.kinds), rng)
                    daemon = start_up(config, path, root / "devices", root / "daemon.log")
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
            wait_for(lambda: _outbox(state) == set(), timeout=600, what="the outbox drained")
            ever |= committed(state, ledger)
            wait_for(lambda: ever <= {e for e, *_ in ledger.visits(DEVICE)}, timeout=60,
                     what="every committed check-in credited")
        except TimeoutError as exc:
            print(f"soak: FAILED: {exc}; the daemon's last lines:")
            print("\n".join((root / "daemon.log").read_text().splitlines()[-15:]))
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
          f"storage faults: {storage.summary()}, "
          f"{time.monotonic() - began:.0f} s")
    return 0 if verdict == "PASSED" else 1


if __name__ == "__main__":
    sys.exit(main())
