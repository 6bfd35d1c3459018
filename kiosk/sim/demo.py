"""``kiosk demo``: a whole shop counter on one machine.

A private mosquitto (when installed), the reference backend, and a kiosk on
simulated hardware with the shipped counter settings (a member who scans again
within ``counter.cooldown_s`` is told "already checked in"). Scripted customers
hold real QR images in front of the simulated camera; a real decoder reads
them; the 128x64 display is drawn in the terminal (2x4 pixels a character, the
lights beside it), redrawn in place within 80x24 on a terminal, and one frame
after another otherwise.

Every scan ends in one outcome the demo watches the kiosk's own counters for,
and the closing line adds them up: a check-in (delivered to the backend or
waiting in the outbox), already checked in, refused, not recorded, or not read
at all. A check-in is *lost* only when it is neither in the backend's ledger
nor in the outbox; the demo exits 1 then, or when a card was not read.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from PIL import Image

from backend import Ledger, LoyaltyBackend
from kiosk.config import StaffSection
from kiosk.counter.screens import Sync, Welcome
from kiosk.sim.broker import Mosquitto, find_mosquitto, free_port
from kiosk.sim.kiosk import RunningKiosk, sim_config, wait_for
from kiosk.sim.termview import FRAME_ROWS, draw
from kiosk.trust.signing import Signer, public_key_text

TERMINAL_COLUMNS, TERMINAL_ROWS = 80, 24
NEWS_LINES = TERMINAL_ROWS - FRAME_ROWS - 1
"""News lines under the frame; the bottom row stays empty so that nothing ever scrolls."""
CUSTOMERS = ["LOY-ALICE01", "LOY-BOB0002", "LOY-CAROL03", "LOY-DAVE004", "LOY-ERIN005"]
PAUSE_S = 1.0
WAIT_S = 10.0
"""How long the demo waits for the kiosk to answer a scan before counting it "not read"."""


@dataclass
class Tally:
    """What became of each scan. Check-ins split further into delivered, waiting and lost."""

    scans: int = 0
    checkins: int = 0
    repeats: int = 0
    refused: int = 0
    not_recorded: int = 0
    not_read: int = 0

    def closing_line(self, delivered: int, waiting: int) -> tuple[str, int]:
        """The demo's last line, whose numbers add up to the scans, and the check-ins lost."""
        lost = self.checkins - delivered - waiting
        parts = [(delivered, "check-ins delivered"), (waiting, "waiting in the outbox"),
                 (self.repeats, "already checked in"), (self.refused, "refused"),
                 (self.not_recorded, "not recorded"), (self.not_read, "not read")]
        told = ", ".join(f"{count} {what}" for count, what in parts if count)
        return f"demo: {self.scans} scans: {told or 'none'}; {lost} lost", lost


def run_demo(scans: int, quiet: bool = False, out: TextIO = sys.stdout) -> int:
    """Run the demo; with ``scans`` > 0 stop after that many customers. Returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="kiosk-demo-") as tmp:
        return _Demo(Path(tmp), quiet, out).run(scans)


def demo_kiosk(root: Path, port: int) -> RunningKiosk:
    """The demo's kiosk: simulated devices, and a staff key of its own so it is not waiting
    to be enrolled (it idles on "Scan your card", not on a pairing code). Nobody holds the
    private key: the demo sends no staff commands."""
    config = sim_config(root, port, device_id="demo-kiosk", site="demo-shop")
    staff = StaffSection(trusted_keys=(public_key_text(Signer.generate().public),))
    return RunningKiosk(replace(config, staff=staff))


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
        self.tally = Tally()
        self._stop = threading.Event()

    def say(self, text: str) -> None:
        with self._print_lock:
            if self._live:
                self._news.extend(line for line in text.splitlines() if line)
                self._paint()
            else:
                print(text, file=self.out, flush=True)

    def _paint(self) -> None:
        """Redraw in place: home, the frame, the news, each line erased to its end (a shorter
        line must not leave the end of a longer one), then everything below erased.

        Lines stay within 79 columns: writing the 80th puts a terminal in its pending-wrap
        state, where erasing to the end of the line would wipe that last character."""
        lines = [*self._frame_text.splitlines(), *self._news]
        body = "".join(f"\n{line[:TERMINAL_COLUMNS - 1]}\x1b[K" for line in lines)
        self.out.write(f"\x1b[H{body[1:]}\x1b[J")
        self.out.flush()

    def run(self, scans: int) -> int:
        """Run the demo; Ctrl-C lets the customer at the counter finish, then ends it."""
        if threading.current_thread() is not threading.main_thread():
            return self._run(scans)  # signal handlers belong to the main thread
        previous = signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        try:
            return self._run(scans)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run(self, scans: int) -> int:
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
        kiosk = demo_kiosk(self.root / "kiosk", port)
        if not self.quiet:
            kiosk.app.sim.display.listeners.append(lambda image: self._frame(kiosk, image))
        try:
            kiosk.start()
            if broker:
                kiosk.wait_online()
            self.say(f"demo: kiosk {kiosk.app.device_id} ready; a member who scans again "
                     f"within {kiosk.config.counter.cooldown_s:.0f} s is already checked in")
            while not self._stop.is_set() and (scans <= 0 or self.tally.scans < scans):
                member = CUSTOMERS[self.tally.scans % len(CUSTOMERS)]
                self.tally.scans += 1
                self._customer(kiosk, member)
                self._stop.wait(PAUSE_S)
            if ledger:
                self._wait(kiosk.wait_drained)
                # a PUBACK means the broker has it; give the backend time to credit it too
                self._wait(lambda: wait_for(
                    lambda: len(ledger.visits(kiosk.app.device_id)) >= kiosk.app.checkins_recorded,
                    WAIT_S, "the backend to credit every visit"))
        finally:
            kiosk.stop()
            if backend:
                backend.stop()
            if broker:
                broker.stop()
        delivered = len(ledger.visits(kiosk.app.device_id)) if ledger else 0
        if ledger:
            ledger.close()
        if self._stop.is_set():
            self.say("demo: stopped (Ctrl-C)")
        line, lost = self.tally.closing_line(delivered, kiosk.app.outbox.depth)
        self.say(line)
        if self._live:
            self.out.write("\n")  # the shell's prompt goes under the last line, not after it
            self.out.flush()
        return 0 if lost == 0 and self.tally.not_read == 0 else 1

    def _customer(self, kiosk: RunningKiosk, member: str) -> None:
        """One customer holds up a card; count what the kiosk made of it."""
        self.say(f"customer {self.tally.scans}: holds up the QR card {member}")
        app = kiosk.app
        before = _outcomes(kiosk)
        kiosk.show_card(member)
        try:
            after = wait_for(lambda: (now := _outcomes(kiosk)) != before and now,
                             WAIT_S, "the kiosk to read the card")
        except TimeoutError as exc:
            self.tally.not_read += 1
            self.say(f"  not read: {exc}")
            return
        checkins, repeats, refused, _not_recorded = (a - b for a, b in zip(after, before,
                                                                         strict=True))
        if checkins:
            self.tally.checkins += 1
            self._wait(lambda: wait_for(_settled(kiosk), WAIT_S, "the backend's answer"))
            screen = app.controller.screen
            synced = isinstance(screen, Welcome) and screen.sync is Sync.SYNCED
            self.say("  checked in" + ("" if synced else ": no answer yet, it will sync"))
        elif repeats:
            self.tally.repeats += 1
            self.say("  already checked in: a repeat visit is not counted twice")
        elif refused:
            self.tally.refused += 1
            self.say("  refused: not a member code")
        else:
            self.tally.not_recorded += 1
            self.say("  NOT recorded: the kiosk could not store the visit and said so")

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


def _outcomes(kiosk: RunningKiosk) -> tuple[int, int, int, int]:
    """The kiosk's own counts of what its scans became: check-ins recorded, repeats told
    "already checked in", codes refused, visits not recorded (storage refused or too busy)."""
    app = kiosk.app
    return (app.checkins_recorded, app.controller.repeats, app.controller.codes_refused,
            app.delivery.visits_refused + app.scans_not_taken)


def _settled(kiosk: RunningKiosk) -> Callable[[], bool]:
    """True once the check-in's screen no longer waits for the backend (answered or timed
    out to "will sync")."""
    def settled() -> bool:
        screen = kiosk.app.controller.screen
        return not (isinstance(screen, Welcome) and screen.sync is Sync.WAITING)
    return settled
