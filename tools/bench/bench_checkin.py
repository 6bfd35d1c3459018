"""Scan -> committed check-in: the kiosk's path against a raw durable SQLite insert.

    .venv/bin/python tools/bench/bench_checkin.py [--scans 300]

The kiosk path is what the controller thread does for one member code: parse,
build the check-in, encode it, commit it to the outbox (WAL, synchronous=FULL).
The raw path inserts an equal payload into an equal table with the same
pragmas. Both write to a temporary directory on the same disk, so the ratio is
the cost of the kiosk's own logic on top of the fsync that durability needs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.controller import Controller, Timing
from kiosk.counter.events import CodeRead, Record
from kiosk.counter.members import MemberCodes
from kiosk.mqtt import protocol
from kiosk.store.db import connect, open_db
from kiosk.store.outbox import Outbox


def kiosk_path(root: Path, scans: int) -> float:
    conn, _ = open_db(root / "kiosk.db")
    outbox = Outbox(conn, max_rows=scans + 1)
    controller = Controller(MemberCodes(r"LOY-[A-Z0-9]{4,32}"), Timing(3, 6), "bench", "boot",
                            known={})
    start = time.perf_counter()
    for n in range(scans):
        actions = controller.handle(CodeRead(f"LOY-M{n:06d}", "camera", time.time()), float(n))
        record = actions[0]
        assert isinstance(record, Record)
        outbox.add(record.checkin.event_id, protocol.encode_checkin(record.checkin))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / scans


def raw_path(root: Path, scans: int, payload: bytes) -> float:
    conn = connect(root / "raw.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT UNIQUE, "
                 "payload BLOB, at REAL)")
    start = time.perf_counter()
    for n in range(scans):
        conn.execute("INSERT INTO t (k, payload, at) VALUES (?, ?, ?)",
                     (f"{n:036d}", payload, time.time()))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / scans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sample = protocol.encode_checkin(CheckIn(
        uuid7(), "bench", "boot", 1, time.time(), "LOY-M000000", "camera"))
    ours, raw = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
            ours.append(kiosk_path(Path(tmp), args.scans))
            raw.append(raw_path(Path(tmp), args.scans, sample))
    kiosk_s, raw_s = statistics.median(ours), statistics.median(raw)
    print(f"{args.scans} scans x {args.rounds} rounds, payload {len(sample)} bytes, "
          f"median per scan")
    print(f"  kiosk: parse + build + encode + durable commit  {kiosk_s * 1e3:7.3f} ms")
    print(f"  raw SQLite insert, same pragmas                 {raw_s * 1e3:7.3f} ms")
    print(f"  ratio {kiosk_s / raw_s:.2f}")


if __name__ == "__main__":
    main()
