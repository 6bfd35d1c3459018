"""``kiosk demo``: a whole shop counter on one machine.

A private mosquitto (when installed), the reference backend, and a kiosk on
simulated hardware. Scripted customers hold real QR images in front of the
simulated camera; real pyzbar decodes them; the 128x64 display is drawn in
the terminal (2x2 pixels a character, 80 columns with the lights beside it),
redrawn in place on a terminal and one frame after another otherwise.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from PIL import Image

from backend import Ledger, LoyaltyBackend
from kiosk.counter.screens import Sync, Welcome
from kiosk.sim.broker import Mosquitto, find_mosquitto, free_port
from kiosk.sim.kiosk import RunningKiosk, sim_config, wait_for
from kiosk.sim.termview import draw

NEWS_LINES = 8
CUSTOMERS = ["LOY-ALICE01", "LOY-BOB0002", "LOY-CAROL03", "LOY-DAVE004", "LOY-ERIN005"]
PAUSE_S = 1.0


def run_demo(scans: int, quiet: bool = False, out: TextIO = sys.stdout) -> int:
    """Run the demo; with ``scans`` > 0 stop after that many customers. Returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="kiosk-demo-") as tmp:
        return _Demo(Path(tmp), quiet, out).run(scans)


class _Demo:
    def __init__(self, root: Path, quiet: bool, out: TextIO) -> None:
        self.root = root
        self.quiet = quiet
        self.out = out
        self._print_lock = threading.Lock()
        self._live = not quiet and out.isatty()
        """On a terminal the display is redrawn in place, with the latest news below it."""
        self._news: deque[str] = deque(maxlen=NEWS_LINES)
        self._frame_text = ""

    def say(self, text: str) -> None:
        with self._print_lock:
            if self._live:
                self._news.extend(text.strip("\n").splitlines())
                self._paint()
            else:
                print(text, file=self.out, flush=True)

    def _paint(self) -> None:
        """Redraw the terminal in place: home, the frame, the news, clear the rest."""
        news = "".join(f"\n{line[:80]}\x1b[K" for line in self._news)
        self.out.write(f"\x1b[H{self._frame_text}{news}\x1b[J")
        self.out.flush()

    def run(self, scans: int) -> int:
        broker = backend = ledger = None
        if self._live:
            self.out.write("\x1b[2J")  # clear once; every frame is then drawn over the last
        if find_mosquitto():
            broker = Mosquitto(self.root / "broker")
            broker.start()
            ledger = Ledger(self.root / "ledger.db")
            backend = LoyaltyBackend(broker.host, broker.port, ledger)
            backend.start()
            port = broker.port
            self.say(f"demo: private mosquitto on 127.0.0.1:{port}, reference backend running")
        else:
            port = free_port()  # nothing listens there: the kiosk runs offline
            self.say("demo: mosquitto is not installed, so the kiosk runs OFFLINE: "
                     "check-ins wait in its outbox (apt-get install mosquitto)")
        kiosk = RunningKiosk(sim_config(self.root / "kiosk", port, device_id="demo-kiosk",
                                        site="demo-shop"))
        if not self.quiet:
            kiosk.app.sim.display.listeners.append(lambda image: self._frame(kiosk, image))
        shown = 0
        try:
            kiosk.start()
            if broker:
                kiosk.wait_online()
            self.say(f"demo: kiosk {kiosk.app.device_id} ready; camera spool "
                     f"{kiosk.config.camera.spool_dir}, serial {kiosk.config.serial.sim_link}")
            while scans <= 0 or shown < scans:
                member = CUSTOMERS[shown % len(CUSTOMERS)]
                shown += 1
                self.say(f"\ncustomer {shown}: holds up the QR card {member}")
                kiosk.show_card(member)
                self._wait_result(kiosk, shown)
                time.sleep(PAUSE_S)
            if ledger:
                self._wait(kiosk.wait_drained)
                # a PUBACK means the broker has it; give the backend time to credit it too
                self._wait(lambda: wait_for(
                    lambda: len(ledger.visits(kiosk.app.device_id)) >= kiosk.app.checkins_recorded,
                    10, "the backend to credit every visit"))
        except KeyboardInterrupt:
            self.say("\ndemo: interrupted")
        finally:
            kiosk.stop()
            if backend:
                backend.stop()
            if broker:
                broker.stop()
        delivered = len(ledger.visits(kiosk.app.device_id)) if ledger else 0
        waiting = kiosk.app.outbox.depth
        if ledger:
            ledger.close()
        lost = shown - delivered - waiting
        if waiting:
            self.say(f"demo: {waiting} check-ins are waiting in the outbox for the broker")
        self.say(f"demo: {shown} scans, {delivered} check-ins delivered, {lost} lost")
        return 0 if lost == 0 else 1

    def _wait_result(self, kiosk: RunningKiosk, shown: int) -> None:
        def settled() -> bool:
            screen = kiosk.app.screen
            return (kiosk.app.checkins_recorded >= shown and isinstance(screen, Welcome)
                    and screen.sync is not Sync.WAITING)

        self._wait(lambda: wait_for(settled, 10, "the check-in"))

    def _wait(self, step: Callable[[], object]) -> None:
        """Run a waiting step; a time-out is reported, and the demo's count shows the rest."""
        try:
            step()
        except TimeoutError as exc:
            self.say(f"demo: {exc}")

    def _frame(self, kiosk: RunningKiosk, image: Image.Image) -> None:
        lights = kiosk.app.hardware.lights
        text = draw(image, lights.state() if lights is not None else {})
        if not self._live:
            self.say(text)
            return
        with self._print_lock:
            self._frame_text = text
            self._paint()
