"""The OLED: a luma device built from config, fed by a thread that shows the newest frame.

A full frame over I2C takes tens of milliseconds. The application renders on
its own thread and calls :meth:`DisplayWorker.show`, which only swaps a
reference; the worker pushes frames to the device and skips any that were
superseded before it got to them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from drivers import DriverError, DriverUnavailable
from drivers.base import FrameSink, Worker
from drivers.specs import DisplaySpec

log = logging.getLogger(__name__)


def make_luma_device(spec: DisplaySpec) -> Any:
    """Open the configured luma.oled device on its I2C or SPI bus."""
    try:
        from luma.core.interface import serial as luma_serial
        from luma.oled import device as oled
    except ImportError as exc:
        raise DriverUnavailable("luma.oled is not installed") from exc
    if spec.interface == "i2c":
        interface = luma_serial.i2c(port=spec.i2c_port, address=spec.i2c_address)
    else:
        interface = luma_serial.spi(port=spec.spi_port, device=spec.spi_device,
                                    gpio_DC=spec.gpio_dc, gpio_RST=spec.gpio_rst)
    driver = getattr(oled, spec.driver)
    return driver(interface, width=spec.width, height=spec.height, rotate=spec.rotate)


class DisplayWorker:
    """Owns the device; ``show`` never blocks the caller on the bus."""

    def __init__(self, device: FrameSink) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._newest: Any = None
        self._ready = threading.Event()
        self._worker = Worker("kiosk-display", self._run)
        self._contrast: int | None = None
        self.frames_shown = 0
        self.frames_skipped = 0

    @property
    def size(self) -> tuple[int, int]:
        """The device's (width, height) in pixels."""
        return self.device.size

    def start(self) -> None:
        """Start the display thread."""
        self._worker.start()

    def show(self, image: Any) -> None:
        """Queue ``image`` as the next frame, replacing any frame not yet shown."""
        with self._lock:
            if self._newest is not None:
                self.frames_skipped += 1
            self._newest = image
        self._ready.set()

    def set_contrast(self, level: int) -> None:
        """Set the panel's brightness (0-255) from the display thread, like a frame.

        luma.core 2.x ``device.contrast`` (luma/core/device.py) sends SETCONTRAST
        over the bus; every luma.oled driver and ``dummy`` have it.
        """
        if not 0 <= level <= 255:
            raise DriverError(f"contrast {level} is not 0-255")
        with self._lock:
            self._contrast = level
        self._ready.set()

    def _run(self, stopping: threading.Event) -> None:
        while True:
            self._ready.wait(0.5)
            with self._lock:
                image, self._newest = self._newest, None
                contrast, self._contrast = self._contrast, None
                self._ready.clear()
            if contrast is not None:
                try:
                    self.device.contrast(contrast)  # type: ignore[attr-defined]
                except Exception:
                    log.exception("display contrast not set")
            if image is not None:
                try:
                    self.device.display(image)
                    self.frames_shown += 1
                except Exception:  # a flaky bus must not kill the display thread
                    log.exception("display write failed")
            elif stopping.is_set():
                return

    def stop(self, timeout: float = 2.0) -> None:
        """Show the last queued frame, then stop the thread."""
        self._worker.stopping.set()
        self._ready.set()
        self._worker.stop(timeout)
