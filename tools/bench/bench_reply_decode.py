"""Bounded reply decoding against a bare ``json.loads``, on a real reply and on hostile ones.

    .venv/bin/python tools/bench/bench_reply_decode.py [--rounds 5] [--count 20000]

The kiosk path is ``protocol.decode_reply``: size check, depth pre-scan, strict
parsing (no NaN, bounded integers, unique keys), string checks and every
field's type and range. The raw path is ``json.loads`` of the same bytes and
nothing else — what the kiosk did before it checked anything. Hostile inputs
(1 MiB, 100,000 levels deep) show what a refusal costs: the raw library on the
same bytes parses all of it, or dies of recursion.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

from kiosk.counter.members import MemberStatus
from kiosk.mqtt import protocol
from kiosk.mqtt.wire import ProtocolError

REPLY = protocol.encode_reply("01a2057a-9ee8-7fca-bd1c-730cf6bd67e3", "LOY-ALICE01",
                              MemberStatus("Alice", 120, "Silver", 30, 0.4, ""),
                              protocol.Ack.CREDITED)
HUGE = REPLY[:-1] + b',"padding":"' + b"M" * (1 << 20) + b'"}'
DEEP = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def per_call_us(decode: Callable[[bytes], object], payload: bytes, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        with contextlib.suppress(ProtocolError, RecursionError):
            decode(payload)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    for name, payload, count in (("reply", REPLY, args.count), ("1 MiB", HUGE, 50),
                                 ("deep", DEEP, 50)):
        kiosk = [per_call_us(protocol.decode_reply, payload, count) for _ in range(args.rounds)]
        raw = [per_call_us(json.loads, payload, count) for _ in range(args.rounds)]
        ratio = statistics.median(kiosk) / statistics.median(raw)
        print(f"{name:6s} kiosk {min(kiosk):9.2f}-{max(kiosk):9.2f} us   "
              f"json.loads {min(raw):9.2f}-{max(raw):9.2f} us   ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
