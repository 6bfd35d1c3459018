"""Frame -> codes: the kiosk's QrDecoder against raw pyzbar doing the same work.

    .venv/bin/python tools/bench/bench_decode.py [--frames 200]

Each frame is a 640x480 8-bit Y plane (what picamera2's lores YUV420 stream
gives), half of them holding a QR member card. Reports time and Python heap
allocated per frame, and the ratio to raw pyzbar in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from PIL import Image
from pyzbar import pyzbar

from drivers.qr import QrDecoder
from kiosk.testing.cards import qr_card

WIDTH, HEIGHT = 640, 480


def frames(count: int) -> list[bytes]:
    """Camera-like frames: grey background, a card at a different place in every other one."""
    out = []
    for n in range(count):
        canvas = Image.new("L", (WIDTH, HEIGHT), 150 + n % 50)
        if n % 2 == 0:
            card = qr_card(f"LOY-MEMBER{n:04d}", module_px=3 + n % 3)
            canvas.paste(card, ((n * 37) % (WIDTH - card.width), (n * 23) % (HEIGHT - card.height)))
        out.append(canvas.tobytes())
    return out


def timed(decode: Callable[[Any], list[str]], data: list[Any], rounds: int) -> float:
    """Median over ``rounds`` of the mean seconds per frame."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for frame in data:
            decode(frame)
        results.append((time.perf_counter() - start) / len(data))
    return statistics.median(results)


def allocated(decode: Callable[[Any], list[str]], data: list[Any]) -> float:
    """Peak bytes of Python heap in use while decoding one frame, averaged (tracemalloc)."""
    tracemalloc.start()
    peak_total = 0
    for frame in data:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        decode(frame)
        _, peak = tracemalloc.get_traced_memory()
        peak_total += peak - base
    tracemalloc.stop()
    return peak_total / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = frames(args.frames)
    decoder = QrDecoder()
    ours = lambda frame: decoder.decode(frame, WIDTH, HEIGHT)  # noqa: E731
    raw = lambda frame: [s.data.decode() for s in pyzbar.decode(  # noqa: E731
        (frame, WIDTH, HEIGHT), symbols=[pyzbar.ZBarSymbol.QRCODE])]
    naive = lambda frame: [s.data.decode() for s in pyzbar.decode(  # noqa: E731
        Image.frombytes("L", (WIDTH, HEIGHT), frame))]
    assert [ours(f) for f in data] == [raw(f) for f in data], "decoders disagree"
    found = sum(1 for f in data if ours(f))
    print(f"{len(data)} frames {WIDTH}x{HEIGHT}, {found} with a card, median of {args.rounds}")
    base = timed(raw, data, args.rounds)
    runs: list[tuple[str, Callable[[Any], list[str]], list[Any]]] = [
        ("kiosk QrDecoder on bytes", ours, data),
        ("raw pyzbar on bytes, QR only", raw, data),
        ("pyzbar on a PIL image, all symbologies", naive, data),
    ]
    try:  # picamera2 hands out numpy arrays: decode them the way the camera thread does
        import numpy as np

        planes = [np.frombuffer(f, dtype=np.uint8).reshape(HEIGHT, WIDTH).copy() for f in data]
        runs += [
            ("kiosk QrDecoder on a numpy Y plane", ours, planes),
            ("raw pyzbar on a numpy Y plane, QR only", lambda plane: [  # copies (tobytes)
                s.data.decode() for s in pyzbar.decode(
                    plane, symbols=[pyzbar.ZBarSymbol.QRCODE])], planes),
        ]
    except ImportError:
        pass
    for name, fn, frames_in in runs:
        seconds = base if fn is raw else timed(fn, frames_in, args.rounds)
        heap = allocated(fn, frames_in) / 1024
        print(f"  {name:42s} {seconds * 1e3:7.2f} ms/frame  "
              f"ratio {seconds / base:5.2f}  heap {heap:8.1f} KiB/frame")


if __name__ == "__main__":
    main()
