"""Display path: render time per screen and layout, frames pushed to luma devices, reply to frame.

    .venv/bin/python tools/bench/render.py [--repeat 30]

1. Render: ``kiosk.ui.render`` for every sample screen in every layout,
   against raw PIL drawing the very lines the kiosk shows (same fonts, same
   text, fixed positions: no fitting, no layout). The ratio is the cost of
   fitting and layout.
2. Frames pushed: the display worker with a ``LumaPanel`` on a capturing bus
   (luma's real encoding for the panel, no bus wait), against calling the luma
   device's ``display()`` directly. A real I2C bus at 400 kHz adds about
   23 ms per 128x64 frame (1 KiB, 9 bits a byte): computed, not measured here.
3. Reply to frame: the controller handling a reply for the check-in on screen
   and the presenter rendering its first frame, until the frame is handed to
   the display worker (the controller thread's whole share of the 20 ms target).
"""

from __future__ import annotations

import argparse
import statistics
import time

from PIL import Image, ImageDraw

from drivers.display import DisplayWorker, LumaPanel, make_luma_device
from drivers.sim import CaptureBus
from drivers.specs import DisplaySpec
from kiosk.counter.controller import Controller, Timing
from kiosk.counter.events import CodeRead, Reply, Show
from kiosk.counter.members import MemberCodes
from kiosk.ui.compose import compose
from kiosk.ui.fonts import font
from kiosk.ui.layouts import Layout
from kiosk.ui.page import BOLD_ROLES, Placed, Row, Text
from kiosk.ui.presenter import Presenter
from kiosk.ui.render import messages, render
from kiosk.ui.samples import ALICE, LAYOUTS, SCREENS, SETTLED_FRAME, STORE
from kiosk.ui.settings import UiSection


def _median_ms(job, repeat: int) -> float:
    job()  # warm caches (fonts, advances)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _raw_job(layout: Layout, screen_name: str):
    """Raw PIL: draw the same lines, at fixed positions, with the same fonts."""
    page = compose(SCREENS[screen_name], messages("en"), STORE, SETTLED_FRAME)
    lines = []
    for block in [*page.blocks, *([page.banner] if page.banner else [])]:
        placed = Placed(block, layout, layout.width)
        for part in placed.stacked or [placed]:
            texts = [part.block.left, part.block.right] if isinstance(part.block, Row) \
                else [part.block] * len(part.lines)
            for text, line in zip(texts, part.lines, strict=False):
                if isinstance(text, Text):
                    role = part.role or text.role
                    lines.append((line, font(layout.sizes[role], bold=role in BOLD_ROLES)))

    def job() -> None:
        image = Image.new(layout.mode, layout.size, 0)
        draw = ImageDraw.Draw(image)
        for y, (line, face) in enumerate(lines):
            draw.text((0, y * 10), line, font=face, fill=255 if layout.mode == "1" else "white")

    return job


def bench_render(repeat: int) -> None:
    print("1. render, median ms per frame (kiosk / raw PIL same lines = ratio)")
    print(f"  {'screen':<24}" + "".join(f"{name:>22}" for name in LAYOUTS))
    worst: dict[str, float] = {}
    for screen_name, screen in SCREENS.items():
        cells = []
        for layout_name, layout in LAYOUTS.items():
            ours = _median_ms(lambda s=screen, lay=layout: render(
                s, lay, store=STORE, frame=SETTLED_FRAME), repeat)
            raw = _median_ms(_raw_job(layout, screen_name), repeat)
            worst[layout_name] = max(worst.get(layout_name, 0.0), ours)
            cells.append(f"{ours:6.2f}/{raw:5.2f}={ours / raw:4.1f}")
        print(f"  {screen_name:<24}" + "".join(f"{cell:>22}" for cell in cells))
    print("  slowest screen per layout: "
          + ", ".join(f"{name} {ms:.2f} ms" for name, ms in worst.items()))


PANELS = {"ssd1306": (128, 64), "sh1106": (128, 64), "ssd1322": (256, 64),
          "ssd1351": (128, 128)}


def bench_push(frames: int) -> None:
    print("2. frames pushed to the panel per second (luma encoding on a capturing bus)")
    for driver, (width, height) in PANELS.items():
        spec = DisplaySpec(driver=driver, width=width, height=height)
        layout = LAYOUTS.get(f"{spec.kind}-{width}x{height}")
        images = [render(SCREENS[name], layout, frame=SETTLED_FRAME) if layout else
                  Image.new(spec.mode, spec.size) for name in ("welcome", "points-earned")]
        images = [image.convert(spec.mode) for image in images]
        raw = make_luma_device(spec, CaptureBus())
        start = time.perf_counter()
        for n in range(frames):
            raw.display(images[n % 2])
        raw_fps = frames / (time.perf_counter() - start)
        worker = DisplayWorker(LumaPanel(spec, interface=CaptureBus()))
        worker.start()
        start = time.perf_counter()
        for n in range(frames):
            worker.show(images[n % 2])
            while worker.frames_shown + worker.frames_skipped <= n:  # one frame at a time
                time.sleep(0.0002)
        ours_fps = frames / (time.perf_counter() - start)
        worker.stop()
        print(f"  {driver:<8} {width}x{height}: kiosk worker {ours_fps:6.1f} fps, "
              f"luma display() alone {raw_fps:6.1f} fps, ratio {raw_fps / ours_fps:4.2f}")


class _Handed:
    """Stands in for the display worker: notes when a frame is handed over."""

    size = (128, 64)

    def __init__(self) -> None:
        self.at = 0.0

    def show(self, image: Image.Image) -> None:
        self.at = time.perf_counter()

    def set_contrast(self, level: int) -> None:
        """Not measured."""


def bench_reply_to_frame(repeat: int) -> None:
    handed = _Handed()
    presenter = Presenter(handed, UiSection(), "mono")
    times = []
    for n in range(repeat):
        controller = Controller(MemberCodes(r"LOY-[A-Z0-9]{4,32}"), Timing(3, 6), "bench",
                                "boot", known={})
        controller.online = True
        actions = controller.handle(CodeRead(f"LOY-M{n:06d}", "camera", time.time()), 0.0)
        event_id = actions[0].checkin.event_id  # type: ignore[attr-defined]
        now = n + 0.1
        start = time.perf_counter()
        for action in controller.handle(Reply(event_id, f"LOY-M{n:06d}", ALICE), now):
            if isinstance(action, Show):
                presenter.show(action.screen, now)
        presenter.paint(now)  # the end of the loop's turn
        times.append(handed.at - start)
    print("3. reply handled -> first frame (the \"+10\") handed to the display worker: "
          f"median {statistics.median(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms "
          f"over {repeat}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    bench_render(args.repeat)
    bench_push(args.frames)
    bench_reply_to_frame(args.repeat)


if __name__ == "__main__":
    main()
