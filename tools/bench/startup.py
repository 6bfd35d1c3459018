"""Start-up and footprint of the real ``kiosk run`` daemon, against a bare Python that
imports the same libraries.

    .venv/bin/python tools/bench/startup.py [--runs 5] [--checkins 10000] [--warmup 6000]

- import time: ``import kiosk.daemon.build`` against importing the libraries it is built on
  (paho, PIL, pyzbar, pyserial, luma, gpiozero, sqlite3) in a fresh interpreter;
- READY: process start to ``READY=1`` on a real ``NOTIFY_SOCKET``, against a bare
  script that imports the same libraries and sends ``READY=1`` itself;
- RSS: the daemon's resident memory (``VmRSS``) once settled after READY (the camera
  thread loads numpy and the decoder after READY), with and without a camera, against
  a bare script that imports exactly the library modules that kiosk has loaded by then
  (every module outside ``kiosk`` and ``drivers``, standard library included: a probe
  runs ``kiosk run`` with the same config in-process and lists them) and waits,
  measured just before it: the difference is the kiosk's own memory. The shared
  libraries and extension modules the two processes map are compared, and any the bare
  script lacks are printed.
- growth: ``--warmup`` check-ins typed on the simulated serial reader, delivered to a
  real mosquitto and answered by the reference backend (so the member cache, the
  cooldown map and SQLite's page cache fill), then RSS along ``--checkins`` more.

The kiosk's modules are byte-compiled first, as ``pip install`` does on a Pi: a checkout
run with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile about 60 modules on every
start (150 ms here) and measure a start-up no installed kiosk has.

Targets on the development machine: READY <= 0.5 s; the kiosk's own memory <= 8 MiB over
the libraries (settled, with the camera); <= 1 MiB growth over 10,000 check-ins once the
caches are full.
"""

from __future__ import annotations

import argparse
import compileall
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend import Ledger, LoyaltyBackend
from kiosk.daemon.inbox import SCAN_LANE
from kiosk.mqtt import protocol
from kiosk.testing.broker import Mosquitto
from kiosk.testing.daemon import start_daemon, to_toml
from kiosk.testing.harness import sim_config

LIBRARIES = ("paho.mqtt.client", "PIL.Image", "pyzbar.pyzbar", "serial", "luma.core.device",
             "gpiozero", "sqlite3")
RAW_READY = (f"import {', '.join(LIBRARIES)}, os, socket, time\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
             "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
             "time.sleep(30)\n")
PROBE = """
import os, sys, threading, time
def report():
    time.sleep(float(sys.argv[2]))
    print(" ".join(sorted(name for name in list(sys.modules)
                          if name.split(".")[0] not in ("kiosk", "drivers", "__main__"))),
          flush=True)
    os._exit(0)
threading.Thread(target=report, daemon=True).start()
from kiosk.cli import main
main(["run", "--config", sys.argv[1]])
"""
"""``kiosk run`` in-process, printing the modules outside the kiosk it has loaded once settled."""
BARE = """
import importlib, sys, time
for name in sys.argv[1].split():
    try:
        importlib.import_module(name)
    except Exception:
        pass
print("imported", flush=True)
time.sleep(60)
"""
"""A Python that imports the given modules and waits: the anchor for the kiosk's RSS."""
MIB = 1024 * 1024
SETTLE_S = 1.5
"""After READY, the seconds the daemon is left to start filming before RSS is read."""
ROOT = Path(__file__).resolve().parents[2]


def import_seconds(statement: str) -> float:
    """Wall time of a fresh interpreter running ``statement``, minus an empty one's."""
    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start
    return run(statement) - run("pass")


def rss(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError("no VmRSS")


def mapped_libraries(pid: int) -> set[str]:
    """The shared libraries and extension modules ``pid`` has mapped (file names)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {Path(line.split()[-1]).name for line in maps if ".so" in line.split()[-1]}


def kiosk_modules(work: Path, port: int, run: int, camera: bool) -> str:
    """The modules outside ``kiosk`` and ``drivers`` that ``kiosk run`` has loaded once settled
    (with this config, in a state directory of its own)."""
    config = sim_config(work / f"probe-{run}", port, device_id=f"probe-{run}")
    if not camera:
        config = replace(config, camera=replace(config.camera, backend="none"))
    path = work / f"probe-{run}.toml"
    path.write_text(to_toml(config))
    probe = subprocess.run([sys.executable, "-c", PROBE, str(path), str(SETTLE_S + 0.5)],
                           capture_output=True, text=True, timeout=60, check=True)
    return probe.stdout.strip().splitlines()[-1]


def own_memory(work: Path, port: int, run: int, camera: bool) -> tuple[float, float, set[str]]:
    """(kiosk RSS, bare script RSS, libraries only the kiosk maps), both settled."""
    bare = subprocess.Popen([sys.executable, "-c", BARE, kiosk_modules(work, port, run, camera)],
                            stdout=subprocess.PIPE)
    try:
        assert bare.stdout is not None
        bare.stdout.readline()
        time.sleep(SETTLE_S)
        bare_rss, bare_maps = rss(bare.pid), mapped_libraries(bare.pid)
    finally:
        bare.kill()
        bare.wait()
    _, daemon, _ = ready_kiosk(work, port, run, camera=camera)
    try:
        time.sleep(SETTLE_S)
        return rss(daemon.pid), bare_rss, mapped_libraries(daemon.pid) - bare_maps
    finally:
        daemon.terminate()
        daemon.wait(20)


def until_ready(start: float, listener: socket.socket) -> float:
    """Seconds from ``start`` to the first ``READY=1``."""
    listener.settimeout(30)
    while not listener.recv(4096).startswith(b"READY=1"):
        pass
    return time.perf_counter() - start


def notify_socket(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    return listener


def ready_raw(work: Path) -> tuple[float, float]:
    """The bare script: seconds to READY and its RSS then."""
    path = work / f"raw-{time.monotonic_ns()}.sock"
    with notify_socket(path) as listener:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", RAW_READY],
                                env={**os.environ, "NOTIFY_SOCKET": str(path)})
        try:
            return until_ready(start, listener), rss(proc.pid)
        finally:
            proc.kill()
            proc.wait()


def ready_kiosk(work: Path, port: int, run: int, camera: bool = True,
                ) -> tuple[float, subprocess.Popen[bytes], Path]:
    """Start the daemon; seconds to READY, the process (still running) and its serial link."""
    path = work / f"kiosk-{run}.sock"
    listener = notify_socket(path)
    config = sim_config(work / f"state-{run}", port, device_id=f"bench-{run}")
    if not camera:
        config = replace(config, camera=replace(config.camera, backend="none"))
    env = {**os.environ, "NOTIFY_SOCKET": str(path)}
    start = time.perf_counter()
    daemon = start_daemon(config, work / f"kiosk-{run}.toml", env=env)
    try:
        seconds = until_ready(start, listener)
    finally:
        listener.close()
    return seconds, daemon, Path(config.serial.sim_link)


def footprint(daemon: subprocess.Popen[bytes], link: Path, port: int, checkins: int,
              device: str) -> list[tuple[int, float]]:
    """Type ``checkins`` member codes in batches; RSS after each batch once the reference
    backend has answered all of them (so the member cache fills too; answers are counted
    inside batched replies)."""
    delivered = 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2)

    def count(_client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal delivered  # the backend's answers: one, or a batch of them
        delivered += len(protocol.decode_replies(message.payload)[0])

    client.on_message = count
    client.connect("127.0.0.1", port)
    client.subscribe(protocol.Topics("loyalty", "test-shop", device).reply, qos=1)
    client.loop_start()
    time.sleep(SETTLE_S)
    samples = [(0, rss(daemon.pid))]
    batch = SCAN_LANE // 2  # inside the controller's scan lane, so no scan is turned away
    with link.open("wb", buffering=0) as scanner:
        for first in range(0, checkins, batch):
            scanner.write(b"".join(f"LOY-M{n:07d}\r".encode()
                                   for n in range(first, first + batch)))
            deadline = time.monotonic() + 60
            while delivered < first + batch:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {delivered} of {first + batch} check-ins arrived")
                time.sleep(0.01)
            samples.append((first + batch, rss(daemon.pid)))
    client.loop_stop()
    client.disconnect()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checkins", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=6_000,
                        help="check-ins before growth is measured (the caches fill)")
    args = parser.parse_args()
    for package in ("kiosk", "drivers"):
        compileall.compile_dir(ROOT / package, quiet=1)

    kiosk_imports = [import_seconds("import kiosk.daemon.build") for _ in range(args.runs)]
    raw_imports = [import_seconds(f"import {', '.join(LIBRARIES)}") for _ in range(args.runs)]
    print(f"import: kiosk.daemon.build {statistics.median(kiosk_imports) * 1000:.0f} ms (median of "
          f"{args.runs}), the libraries alone {statistics.median(raw_imports) * 1000:.0f} ms, "
          f"ratio {statistics.median(kiosk_imports) / statistics.median(raw_imports):.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        ledger = Ledger(work / "ledger.db")
        service = LoyaltyBackend(broker.host, broker.port, ledger)
        service.start()
        try:
            raw = [ready_raw(work) for _ in range(args.runs)]
            kiosk: list[float] = []
            for run in range(args.runs):
                seconds, daemon, link = ready_kiosk(work, broker.port, run)
                kiosk.append(seconds)
                if run < args.runs - 1:
                    daemon.terminate()
                    daemon.wait(20)
            raw_ready = statistics.median(r[0] for r in raw)
            print(f"READY: kiosk run {min(kiosk):.3f}-{max(kiosk):.3f} s (median "
                  f"{statistics.median(kiosk):.3f}), bare script {raw_ready:.3f} s, ratio "
                  f"{statistics.median(kiosk) / raw_ready:.2f}")
            try:
                samples = footprint(daemon, link, broker.port, args.warmup + args.checkins,
                                    f"bench-{args.runs - 1}")
            finally:
                daemon.terminate()
                daemon.wait(20)
            own = {camera: own_memory(work, broker.port, args.runs + 1 + camera, camera)
                   for camera in (True, False)}
        finally:
            service.stop()
            ledger.close()
            broker.stop()
    for camera, (kiosk_rss, bare_rss, only_kiosk) in own.items():
        print(f"RSS settled {'with' if camera else 'without'} a camera: kiosk "
              f"{kiosk_rss:.1f} MiB, bare script with the same library modules {bare_rss:.1f} MiB: "
              f"the kiosk's own {kiosk_rss - bare_rss:.1f} MiB"
              + ("  [target <= 8]" if camera else "")
              + (f"; mapped by the kiosk only: {', '.join(sorted(only_kiosk))}"
                 if only_kiosk else ""))
    warm = next(sample for sample in samples if sample[0] >= args.warmup)
    shown = [samples[0], next(sample for sample in samples if sample[0] >= 1000), warm,
             samples[-1]]
    print("RSS along the check-ins (camera, backend answering): "
          + ", ".join(f"{rss_mib:.1f} MiB after {n}" for n, rss_mib in shown))
    print(f"growth from check-in {warm[0]} to {samples[-1][0]}: "
          f"{samples[-1][1] - warm[1]:+.1f} MiB  [target <= 1]")


if __name__ == "__main__":
    main()
