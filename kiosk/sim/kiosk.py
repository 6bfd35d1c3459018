"""A kiosk on simulated hardware, running on its own controller thread, for tests and the demo."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from drivers.base import Hardware
from drivers.factory import SimHandles
from drivers.specs import CameraSpec, DisplaySpec, LightsSpec, NfcSpec, SerialSpec, WedgeSpec
from kiosk.config import Config, CounterSection, KioskSection, MqttSection
from kiosk.daemon.app import App
from kiosk.daemon.build import build, serve
from kiosk.ops.cards import qr_card


def sim_config(state_dir: Path, broker_port: int, *, device_id: str = "kiosk-test",
               site: str = "test-shop", serial: bool = True, **sections: Any) -> Config:
    """A config whose every device is simulated and whose files all live under ``state_dir``."""
    config = Config(
        kiosk=KioskSection(device_id=device_id, site=site, state_dir=str(state_dir)),
        counter=CounterSection(reply_timeout_s=3.0, result_screen_s=2.0),
        mqtt=MqttSection(host="127.0.0.1", port=broker_port, keepalive_s=5,
                         reconnect_min_s=0.2, reconnect_max_s=1.0),
        camera=CameraSpec(backend="sim", spool_dir=str(state_dir / "camera"), hold_s=0.4,
                          fps=20, cooldown_s=5.0),
        serial=SerialSpec(backend="sim" if serial else "none",
                          sim_link=str(state_dir / "serial")),
        display=DisplaySpec(backend="sim", sim_png=str(state_dir / "display.png")),
        lights=LightsSpec(backend="sim", buzzer_pin=22, buzzer="tonal",
                          sim_state=str(state_dir / "lights.json")),
        keyboard=WedgeSpec(backend="sim"),
        nfc=NfcSpec(backend="sim"),
    )
    return replace(config, **sections)


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    """True when two display frames light exactly the same pixels."""
    return a.size == b.size and a.convert("1").tobytes() == b.convert("1").tobytes()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class RunningKiosk:
    """An :class:`~kiosk.daemon.app.App` on its own thread, with the customer's side exposed."""

    def __init__(self, config: Config,
                 hardware: tuple[Hardware, SimHandles] | None = None) -> None:
        self.config = config
        self.app = build(config, hardware)
        """The kiosk running now: a new one after each restart (command or new config)."""
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kiosk-controller", daemon=True)

    def _serve(self) -> None:
        self.app.run(self._stop)
        if self.app.restart_requested is not None:
            serve(self.config, self._stop, self._restarted, self.app.health.carry())

    def _restarted(self, app: App) -> None:
        self.app = app
        self.restarts += 1

    def start(self, timeout: float = 10.0) -> RunningKiosk:
        """Start the controller thread and wait until every part runs."""
        self._thread.start()
        if not self.app.wait_ready(timeout):
            raise TimeoutError("kiosk did not start")
        return self

    def wait_restarted(self, restarts: int = 1, timeout: float = 20.0) -> App:
        """Wait until the kiosk has restarted ``restarts`` times in all and is running again."""
        wait_for(lambda: self.restarts >= restarts and self.app.wait_ready(0), timeout,
                 f"{restarts} restart(s)")
        return self.app

    def show_card(self, text: str) -> None:
        """A customer holds a QR card with ``text`` in front of the camera."""
        if self.app.sim.camera is None:
            raise self._missing("camera", "camera")
        self.app.sim.camera.show(qr_card(text))

    def type_code(self, text: str) -> None:
        """A customer scans ``text`` on the serial reader."""
        if self.app.sim.serial is None:
            raise self._missing("serial reader", "serial")
        self.app.sim.serial.type(text)

    def scan_on_keyboard(self, text: str) -> None:
        """A customer scans ``text`` on the keyboard-wedge reader (typed, then Enter)."""
        if self.app.sim.keyboard is None:
            raise self._missing("keyboard reader", "keyboard")
        self.app.sim.keyboard.type(text)

    def tap(self, uid: bytes, text: str | None = None) -> None:
        """A customer taps an NFC tag (with an NDEF text record when ``text`` is given)."""
        if self.app.sim.nfc is None:
            raise self._missing("NFC reader", "nfc")
        self.app.sim.nfc.tap(uid, text)

    def _missing(self, device: str, section: str) -> RuntimeError:
        """Why the kiosk has no such simulated device: the problem met when it was made (a
        library missing, and the extra that brings it), else its config."""
        problem = next((p for p in self.app.hardware.problems if p.startswith(f"{section}:")),
                       f"{section}.backend is not \"sim\"")
        return RuntimeError(f"this kiosk has no simulated {device}: {problem}")

    def wait_online(self, timeout: float = 10.0) -> None:
        """Wait until the kiosk is connected to the broker."""
        wait_for(lambda: self.app.controller.online, timeout, "the kiosk to connect")

    def wait_drained(self, timeout: float = 20.0) -> None:
        """Wait until the outbox is empty: every check-in recorded so far (at least one) has
        left it, which it does only on the backend's acknowledgement."""
        wait_for(lambda: self.app.outbox.depth == 0 and self.app.checkins_recorded,
                 timeout, "the outbox to drain")

    def wait_credited(self, count: int = 1, timeout: float = 20.0) -> int:
        """Wait until the backend has acknowledged ``count`` check-ins of this run as credited
        (or duplicates) and nothing waits in the outbox; returns how many it acknowledged.

        Raises ``AssertionError`` naming the count when the backend refused any: a test that
        waits for credit must not pass on a refusal."""
        publisher = self.app.delivery.publisher
        wait_for(lambda: publisher.backend_refused or (
            publisher.delivered >= count and self.app.outbox.depth == 0),
            timeout, f"{count} check-in(s) credited by the backend")
        if publisher.backend_refused:
            raise AssertionError(f"the backend refused {publisher.backend_refused} check-in(s) "
                                 "(see the kiosk's log for why)")
        return publisher.delivered

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the kiosk as SIGTERM would, and wait for it."""
        self._stop.set()
        if self._thread.ident is None:  # never started
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("kiosk did not stop")
