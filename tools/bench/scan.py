"""Scanning at the counter: the kiosk's pipeline against the raw decoders, on frames it makes.

    .venv/bin/python tools/bench/scan.py [--quick] [--counter-s 300]

1. **Decoding.** Camera-like frames at 640x480 and 1280x720: member cards (plain
   ids and signed cards) rotated, keystoned, blurred, noisy, on a busy
   background, in uneven light, and empty frames. The same frames (numpy Y
   planes) go through raw pyzbar with default settings, raw pyzbar QR-only,
   raw zxing-cpp QR-only (library defaults, and with rotate/invert/downscale
   off) and the kiosk's pipeline (``drivers.camera.FrameReader``: region, motion
   gate, decoder; then ``kiosk.counter.members.MemberCodes.parse``). Read rate and
   frames per second, and the pipeline's ratio to the fastest raw decoder.
2. **Scan -> committed check-in.** A running kiosk (``kiosk.daemon.app.App`` on
   simulated hardware, offline): a reader thread hands codes up, the controller
   thread parses, builds and commits each check-in (WAL, synchronous=FULL).
   p50/p99 from the hand-up to the commit, against a bare durable SQLite
   insert of the same payload.
3. **Idle cost.** The real capture thread (``drivers.camera.CameraSource``) fed
   by the simulated camera at 15 fps: CPU of that thread on a static empty
   scene and with a card held in view, as a share of one core.
4. **A busy counter.** ``--counter-s`` seconds of :class:`kiosk.testing.footage.CounterFootage`
   at 15 fps (people walking past behind, flickering and dimming light, glare, a card
   shown about every 20 s, held 1-2 s, near or far): each frame goes through the
   kiosk's pipeline and through raw zxing-cpp (defaults, and tuned for speed), taking
   turns frame by frame. Frames decoded, CPU against raw zxing-cpp on every frame,
   showings read, and how soon after each card came to rest it was read.

Prints every number and the targets of issues 7 and 19 with PASS/FAIL. About two minutes.
"""

from __future__ import annotations

import argparse
import logging
import math
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import zxingcpp
from PIL import Image, ImageDraw, ImageFilter
from pyzbar import pyzbar

from drivers.camera import CameraSource, FrameReader
from drivers.qr import make_decoder
from drivers.sim import SimCamera
from drivers.specs import CameraSpec
from kiosk.config import MqttSection
from kiosk.counter.events import CodeRead
from kiosk.counter.members import MemberCodes, sign_card
from kiosk.daemon.build import build
from kiosk.store.db import connect
from kiosk.testing.broker import free_port
from kiosk.testing.cards import qr_card
from kiosk.testing.footage import FPS, CounterFootage
from kiosk.testing.harness import sim_config
from kiosk.trust.signing import Signer, Verifier

ISSUER = Signer.generate()
PATTERN = r"LOY-[A-Z0-9]{4,32}"


# --- 1. frames -------------------------------------------------------------------------------


@dataclass
class Frame:
    """One camera frame and the code on it ("" for an empty frame)."""

    plane: np.ndarray
    code: str
    how: str


def _perspective(size: tuple[int, int], rng: np.random.Generator,
                 amount: float) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients moving each corner by up to ``amount`` of the size."""
    width, height = size
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    moved = [(x + rng.uniform(-amount, amount) * width, y + rng.uniform(-amount, amount) * height)
             for x, y in corners]
    rows = []
    for (x, y), (u, v) in zip(corners, moved, strict=True):
        rows.append([u, v, 1, 0, 0, 0, -x * u, -x * v])
        rows.append([0, 0, 0, u, v, 1, -y * u, -y * v])
    target = np.array([c for corner in corners for c in corner], dtype=float)
    return tuple(np.linalg.solve(np.array(rows, dtype=float), target))


def _background(size: tuple[int, int], rng: np.random.Generator, busy: bool) -> Image.Image:
    width, height = size
    ramp = np.linspace(rng.uniform(90, 150), rng.uniform(150, 210), width)
    canvas = Image.fromarray(np.tile(ramp, (height, 1)).astype(np.uint8))
    if busy:  # a counter with receipts, a keyboard, a plant: edges everywhere
        draw = ImageDraw.Draw(canvas)
        for _ in range(60):
            x, y = rng.integers(0, width), rng.integers(0, height)
            w, h = rng.integers(10, width // 4), rng.integers(10, height // 4)
            shade = int(rng.integers(0, 256))
            if rng.random() < 0.5:
                draw.rectangle((x, y, x + w, y + h), fill=shade)
            else:
                draw.line((x, y, x + w, y + h), fill=shade, width=int(rng.integers(1, 6)))
        for _ in range(20):
            x, y = rng.integers(0, width), rng.integers(0, height)
            draw.text((x, y), "RECEIPT 12.50 VAT", fill=int(rng.integers(0, 80)))
    return canvas


def make_frames(size: tuple[int, int], count: int, empty: int, seed: int) -> list[Frame]:
    """``count`` frames with a card and ``empty`` without, each distorted its own way."""
    rng = np.random.default_rng(seed)
    frames = []
    for n in range(count + empty):
        how = []
        busy = rng.random() < 0.4
        if busy:
            how.append("busy")
        canvas = _background(size, rng, busy)
        code = ""
        if n < count:
            code = (sign_card(ISSUER, f"M-{seed}{n:05d}") if n % 3 == 0
                    else f"LOY-{seed}M{n:05d}")
            module = int(rng.integers(3, 7)) * (2 if size[0] > 1000 else 1)
            card = qr_card(code, module_px=module)
            if rng.random() < 0.5:
                angle = float(rng.uniform(0, 360))
                card = card.rotate(angle, expand=True, fillcolor=255)
                how.append(f"rot{angle:.0f}")
            if rng.random() < 0.5:
                card = card.transform(card.size, Image.Transform.PERSPECTIVE,
                                      _perspective(card.size, rng, 0.08),
                                      Image.Resampling.BILINEAR, fillcolor=255)
                how.append("keystone")
            card.thumbnail((size[0] - 20, size[1] - 20))
            x = int(rng.integers(0, size[0] - card.width + 1))
            y = int(rng.integers(0, size[1] - card.height + 1))
            canvas.paste(card, (x, y))
        if rng.random() < 0.4:
            canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.4))))
            how.append("blur")
        plane = np.asarray(canvas, dtype=np.float32)
        if rng.random() < 0.4:  # light from one side
            width, height = size
            xs = np.linspace(rng.uniform(0.35, 0.7), 1.1, width)
            ys = np.linspace(1.0, rng.uniform(0.6, 1.0), height)[:, None]
            plane = plane * (xs[None, :] * ys)
            how.append("light")
        if rng.random() < 0.5:
            plane = plane + rng.normal(0, rng.uniform(3, 9), plane.shape)
            how.append("noise")
        frames.append(Frame(np.clip(plane, 0, 255).astype(np.uint8), code, "+".join(how)))
    return frames


# --- decoders -------------------------------------------------------------------------------

Decode = Callable[[np.ndarray], list[str]]


def raw_decoders() -> dict[str, Decode]:
    """The libraries as a newcomer would call them, on the same numpy planes."""
    qr = [pyzbar.ZBarSymbol.QRCODE]
    zx_qr = zxingcpp.BarcodeFormat.QRCode
    return {
        "raw pyzbar, default settings": lambda plane: [
            s.data.decode("utf-8", "replace") for s in pyzbar.decode(plane)],
        "raw pyzbar, QR only": lambda plane: [
            s.data.decode("utf-8", "replace") for s in pyzbar.decode(plane, symbols=qr)],
        "raw zxing-cpp, QR only (defaults)": lambda plane: [
            b.text for b in zxingcpp.read_barcodes(plane, formats=zx_qr)],
        "raw zxing-cpp, QR only, rotate/invert/downscale off": lambda plane: [
            b.text for b in zxingcpp.read_barcodes(plane, formats=zx_qr, try_rotate=False,
                                                   try_invert=False, try_downscale=False)],
    }


def pipeline(spec: CameraSpec) -> Decode:
    """The kiosk's per-frame path: FrameReader (region, gate, decoder), then member parsing.

    Each frame here is a scene of its own (another counter, another card), so each is the
    gate's first look at a scene: it measures the zone and lets the frame through."""
    decoder = make_decoder(spec.decoder, try_downscale=spec.try_downscale)
    codes = MemberCodes(PATTERN, Verifier({ISSUER.key_id: ISSUER.public}))

    def look(plane: np.ndarray) -> list[str]:
        found = FrameReader(spec, decoder).look(plane, 0.0) or []
        for code in found:  # what the controller does next with each code
            codes.parse(code, "camera")
        return found

    return look


def read_rate(decode: Decode, frames: list[Frame]) -> tuple[int, int]:
    """(cards read, false reads) over ``frames``."""
    read = wrong = 0
    for frame in frames:
        found = decode(frame.plane)
        if frame.code and frame.code in found:
            read += 1
        wrong += sum(1 for text in found if text != frame.code)
    return read, wrong


def frames_per_second(decoders: dict[str, Decode], frames: list[Frame],
                      rounds: int) -> dict[str, float]:
    """Frames decoded per second by each decoder: the best of ``rounds`` passes (as
    ``timeit`` advises: other processes only ever slow a pass down), the decoders taking
    turns within each round so that a busy moment on this shared machine does not fall on
    one of them only."""
    passes: dict[str, list[float]] = {name: [] for name in decoders}
    for round_ in range(rounds):
        for name, decode in decoders.items():
            if round_ and "default settings" in name:
                continue  # zbar with every symbology: one pass is enough to be slowest
            start = time.perf_counter()
            for frame in frames:
                decode(frame.plane)
            passes[name].append(len(frames) / (time.perf_counter() - start))
    return {name: max(values) for name, values in passes.items()}


# --- 2. scan -> committed check-in -----------------------------------------------------------


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def scan_to_commit(root: Path, scans: int, gap_s: float) -> list[float]:
    """Seconds from a reader's hand-up to the check-in's durable commit, per scan."""
    config = sim_config(root, free_port(), serial=False)
    config = replace(config, camera=replace(config.camera, backend="none"),
                     mqtt=MqttSection(host="127.0.0.1", port=free_port()),
                     kiosk=replace(config.kiosk, state_dir=str(root)))
    app = build(config)
    committed: queue.SimpleQueue[float] = queue.SimpleQueue()
    add_many = app.outbox.add_many  # the controller thread's one durable commit

    def timed_add_many(*args: Any, **kwargs: Any) -> Any:
        rows = add_many(*args, **kwargs)
        done = time.perf_counter()
        for _ in rows:
            committed.put(done)
        return rows

    app.outbox.add_many = timed_add_many  # type: ignore[method-assign]
    stop = threading.Event()
    runner = threading.Thread(target=app.run, args=(stop,), name="kiosk-controller")
    runner.start()
    app.wait_ready(10)
    latencies = []
    try:
        for n in range(scans):
            handed = time.perf_counter()
            app.inbox.put(CodeRead(f"LOY-BENCH{n:05d}", "camera", time.time()))  # as a reader does
            latencies.append(committed.get(timeout=5) - handed)
            time.sleep(gap_s)
    finally:
        stop.set()
        runner.join(10)
    return latencies


def raw_commit(root: Path, scans: int, payload: bytes) -> list[float]:
    """Seconds per bare durable insert of the same payload (same pragmas)."""
    conn = connect(root / "raw.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT UNIQUE, "
                 "payload BLOB, at REAL)")
    latencies = []
    for n in range(scans):
        start = time.perf_counter()
        conn.execute("INSERT INTO t (k, payload, at) VALUES (?, ?, ?)",
                     (f"{n:036d}", payload, time.time()))
        latencies.append(time.perf_counter() - start)
    conn.close()
    return latencies


# --- 3. capture thread CPU --------------------------------------------------------------------


def capture_cpu(root: Path, seconds: float, card: Image.Image | None, idle_fps: float,
                idle_after_s: float = 10.0) -> float:
    """Share of one core the real capture thread uses at 15 fps on the simulated camera."""
    spec = CameraSpec(backend="sim", fps=15, idle_fps=idle_fps, idle_after_s=idle_after_s,
                      spool_dir=str(root / "spool"))
    camera = SimCamera(spec)
    camera.set_scene(card)
    source = CameraSource(camera, spec)
    source.start(lambda *_: None)
    try:
        time.sleep(2.0)  # past start-up and the gate's settling second
        cpu, wall = source.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        return (source.cpu_seconds() - cpu) / (time.perf_counter() - wall)
    finally:
        source.stop()


# --- 4. a busy counter ----------------------------------------------------------------------


@dataclass
class CounterRun:
    """What one pass over the footage showed."""

    frames: int
    decoded: int
    showings: int
    read: dict[str, int]  # decoder -> showings it read
    late_ms: list[float]  # the pipeline's reads: ms after the card came to rest (0: before)
    missed: int  # showings raw zxing-cpp read on some frame and the pipeline did not
    seconds: dict[str, float]  # decoder -> time spent on all frames


def busy_counter(seconds: float, seed: int) -> CounterRun:
    """The footage through the pipeline and the raw decoders, frame by frame in turn."""
    spec = CameraSpec(backend="sim", fps=FPS)
    reader = FrameReader(spec, make_decoder(spec.decoder, try_downscale=spec.try_downscale))
    qr = zxingcpp.BarcodeFormat.QRCode
    raw: dict[str, Decode] = {
        "raw zxing-cpp (defaults)": lambda plane: [
            b.text for b in zxingcpp.read_barcodes(plane, formats=qr)],
        "raw zxing-cpp (tuned)": lambda plane: [
            b.text for b in zxingcpp.read_barcodes(plane, formats=qr, try_rotate=False,
                                                   try_invert=False, try_downscale=False)],
    }
    footage = CounterFootage(seconds, seed=seed)
    spent = {"pipeline": 0.0, **{name: 0.0 for name in raw}}
    first: dict[str, dict[int, float]] = {name: {} for name in spent}
    decoded = 0
    for shot in footage:
        found: dict[str, list[str]] = {}
        start = time.perf_counter()
        codes = reader.look(shot.plane, shot.at)
        spent["pipeline"] += time.perf_counter() - start
        found["pipeline"] = codes or []
        decoded += codes is not None
        for name, decode in raw.items():
            start = time.perf_counter()
            found[name] = decode(shot.plane)
            spent[name] += time.perf_counter() - start
        if shot.code:
            for name, texts in found.items():
                if shot.code in texts:
                    late = shot.at - shot.still_since if shot.still_since is not None else 0.0
                    first[name].setdefault(shot.showing, max(0.0, late))
    ours = first["pipeline"]
    missed = len(set(first["raw zxing-cpp (defaults)"]) - set(ours))
    return CounterRun(footage.frames, decoded, len(footage.showings),
                      {name: len(reads) for name, reads in first.items()},
                      [late * 1e3 for late in ours.values()], missed, spent)


# --- report -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and scans")
    parser.add_argument("--counter-s", type=float, default=300.0,
                        help="seconds of busy-counter footage (15 fps)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the offline kiosk's "cannot reach the broker" lines
    per_size, empty, rounds, scans = (16, 4, 3, 100) if args.quick else (40, 10, 7, 300)
    frames = (make_frames((640, 480), per_size, empty, seed=1)
              + make_frames((1280, 720), per_size, empty, seed=2))
    coded = [f for f in frames if f.code]
    spec = CameraSpec(backend="sim", fps=15)
    look = pipeline(spec)
    decoders = {**raw_decoders(), f"kiosk pipeline ({make_decoder('auto').name}, gate, parse)":
                look}
    print(f"{len(coded)} frames with a card and {len(frames) - len(coded)} empty, "
          f"640x480 and 1280x720; fps: best of {rounds} rounds on the frames with a card")
    rates: dict[str, int] = {}
    wrongs: dict[str, int] = {}
    for name, decode in decoders.items():
        rates[name], wrongs[name] = read_rate(decode, frames)
    speeds = frames_per_second(decoders, coded, rounds)
    for name in decoders:
        print(f"  {name:55s} read {rates[name]:3d}/{len(coded)}  false {wrongs[name]}  "
              f"{speeds[name]:8.1f} frames/s")
    ours = list(decoders)[-1]
    raw = [name for name in decoders if name != ours]
    fastest = max(raw, key=lambda name: speeds[name])
    zbar_default = raw[0]
    missed = [f.how for f in coded if f.code not in look(f.plane)]
    print(f"  pipeline missed: {missed}")

    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        latencies = scan_to_commit(Path(tmp) / "kiosk", scans, 0.01)
        sample = f'{{"v":1,"event_id":"{"0" * 36}","member_id":"LOY-BENCH00001"}}'.encode()
        raw_latencies = raw_commit(Path(tmp), scans, sample * 3)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    r50, r99 = _percentile(raw_latencies, 0.5), _percentile(raw_latencies, 0.99)
    print(f"scan -> committed check-in, {scans} scans (reader thread -> queue -> controller "
          f"thread -> outbox commit): p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms; "
          f"bare durable insert p50 {r50 * 1e3:.2f} ms, p99 {r99 * 1e3:.2f} ms "
          f"(ratio p50 {p50 / r50:.2f})")

    with tempfile.TemporaryDirectory() as tmp:
        seconds = 4.0 if args.quick else 10.0
        static = capture_cpu(Path(tmp) / "a", seconds, None, idle_fps=15)
        static_idle = capture_cpu(Path(tmp) / "b", seconds, None, idle_fps=5, idle_after_s=1)
        in_view = capture_cpu(Path(tmp) / "c", seconds / 2,
                              qr_card(sign_card(ISSUER, "M-1234567")), idle_fps=15)
    print(f"capture thread CPU at 15 fps (share of one core, {seconds:.0f} s each): static "
          f"empty scene {static:.2%} (idle rate off), {static_idle:.2%} (dropping to 5 fps "
          f"after 1 s); a card held in view {in_view:.2%}")

    counter = busy_counter(args.counter_s / 2 if args.quick else args.counter_s, seed=19)
    defaults, tuned = counter.seconds["raw zxing-cpp (defaults)"], \
        counter.seconds["raw zxing-cpp (tuned)"]
    share = counter.decoded / counter.frames
    worst = max(counter.late_ms, default=float("inf"))
    print(f"busy counter, {counter.frames / FPS:.0f} s at {FPS:.0f} fps ({counter.frames} frames, "
          f"{counter.showings} cards shown): pipeline decoded {counter.decoded} frames "
          f"({share:.1%}); CPU {counter.seconds['pipeline'] / counter.frames * 1e3:.3f} ms a "
          f"frame against {defaults / counter.frames * 1e3:.3f} ms for raw zxing-cpp "
          f"(defaults) and {tuned / counter.frames * 1e3:.3f} ms (tuned) on every frame "
          f"(ratios {counter.seconds['pipeline'] / defaults:.2f}, "
          f"{counter.seconds['pipeline'] / tuned:.2f}); showings read: "
          + ", ".join(f"{name} {read}" for name, read in counter.read.items())
          + f"; read {min(counter.late_ms, default=0):.0f}-{worst:.0f} ms after the card "
          f"came to rest")

    checks = [
        ("busy counter: every showing read (as many as raw zxing-cpp on every frame)",
         counter.read["pipeline"] == counter.showings and counter.missed == 0,
         f"{counter.read['pipeline']}/{counter.showings}"),
        ("busy counter: each read <= 300 ms after the card came to rest", worst <= 300,
         f"worst {worst:.0f} ms"),
        ("busy counter: at most one frame in five decoded", share <= 0.2, f"{share:.1%}"),
        ("busy counter: CPU <= 0.3x raw zxing-cpp on every frame",
         counter.seconds["pipeline"] <= 0.3 * defaults,
         f"{counter.seconds['pipeline'] / defaults:.2f}x defaults, "
         f"{counter.seconds['pipeline'] / tuned:.2f}x tuned"),
        ("pipeline read rate >= every raw decoder's",
         all(rates[ours] >= rates[name] for name in raw),
         f"{rates[ours]} vs best raw {max(rates[name] for name in raw)}"),
        ("pipeline frames/s >= 0.9x the fastest raw decoder", speeds[ours] >= 0.9 *
         speeds[fastest], f"{speeds[ours] / speeds[fastest]:.2f}x {fastest}"),
        ("pipeline frames/s >= 10x raw pyzbar default", speeds[ours] >= 10 *
         speeds[zbar_default], f"{speeds[ours] / speeds[zbar_default]:.1f}x"),
        ("static empty scene at 15 fps <= 5% of a core", static <= 0.05, f"{static:.2%}"),
        ("scan -> committed check-in p99 <= 50 ms", p99 <= 0.050, f"{p99 * 1e3:.2f} ms"),
    ]
    print("targets:")
    for what, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}: {value}")


if __name__ == "__main__":
    main()
