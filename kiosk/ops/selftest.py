"""``kiosk selftest``: shows every screen, plays every light pattern and tune, for an installer.

Runs on the configured hardware (real or simulated) without the broker or
the database, so it can be run before the kiosk is enrolled: watch the
display and the light, listen to the buzzer, and compare with what is
printed. Exit code 1 when a device is missing or the display failed.
"""

from __future__ import annotations

import time
from typing import TextIO

from drivers.display import DisplayWorker
from drivers.factory import make_hardware
from kiosk.config import Config
from kiosk.counter.events import Cue
from kiosk.ui.lights import PATTERNS, cue
from kiosk.ui.presenter import Presenter
from kiosk.ui.samples import SCREENS, SETTLED_FRAME


def run_selftest(config: Config, out: TextIO, screen_s: float = 1.5,
                 pattern_s: float = 2.5) -> int:
    """Cycle the screens and the patterns; returns the exit code."""
    hardware, _ = make_hardware(config.hardware)
    for problem in hardware.problems:
        print(f"selftest: PROBLEM {problem}", file=out, flush=True)
    display = DisplayWorker(hardware.display) if hardware.display else None
    presenter = Presenter(display, config.ui, config.display.kind, config.display.contrast)
    try:
        if display is not None:
            display.start()
            print(f"selftest: display {config.display.driver} {presenter.layout.name}, "
                  f"language {config.ui.locale}", file=out, flush=True)
            for name, screen in SCREENS.items():
                print(f"selftest: screen {name}", file=out, flush=True)
                display.show(presenter.render(screen, SETTLED_FRAME))
                time.sleep(screen_s)
        if hardware.lights is not None:
            for name, pattern in PATTERNS.items():
                tune = " ".join(note or "-" for note, _ in pattern.tune)
                print(f"selftest: light {name}" + (f", buzzer {tune}" if tune else ""),
                      file=out, flush=True)
                cue(hardware.lights, name)
                time.sleep(pattern_s)
            cue(hardware.lights, Cue.OFF)
    finally:
        if display is not None:
            display.stop()
        hardware.close()
    fault = display.fault if display is not None else None
    if fault:
        print(f"selftest: PROBLEM {fault}", file=out, flush=True)
    ok = not hardware.problems and not fault
    print(f"selftest: {'done' if ok else 'done, with problems'}", file=out, flush=True)
    return 0 if ok else 1
