"""The OLED: a luma device built from config, fed by a thread that shows the newest frame.

A full frame over I2C takes tens of milliseconds. The application renders on
its own thread and calls :meth:`DisplayWorker.show`, which only swaps a
reference; the worker pushes frames to the device and skips any that were
superseded before it got to them. A panel that fails (I2C errors, unplugged)
is logged once, reported to the ``on_problem`` callback as code sources report
theirs (and kept in :attr:`DisplayWorker.fault`), closed and reopened with a
growing pause; the caller never waits for it.

Checked against luma.core 2.6.0 (``luma/core/device.py``, ``mixin.py``,
``interface/serial.py``) and luma.oled 3.16.0 (``luma/oled/device/*.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from drivers import DriverError, DriverUnavailable
from drivers.backoff import Backoff
from drivers.base import FrameSink, OnProblem, Worker, no_problem_report
from drivers.specs import DisplaySpec

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


def make_interface(spec: DisplaySpec) -> Any:
    """The configured I2C or SPI bus, as luma.core's serial interface.

    I2C needs smbus2 (a luma.core dependency). SPI needs ``spidev`` and a GPIO
    library for the DC/RST pins (``RPi.GPIO``'s API, which ``rpi-lgpio``
    provides on every Pi including the Pi 5): luma.core >= 2.5.1 installs them
    only through its ``spi``/``gpio`` extras, which the kiosk's ``pi`` extra
    pulls in.
    """
    try:
        from luma.core.interface import serial as luma_serial
    except ImportError as exc:
        raise DriverUnavailable("luma.core is not installed") from exc
    if spec.interface == "i2c":
        return luma_serial.i2c(port=spec.i2c_port, address=spec.i2c_address)
    try:
        return luma_serial.spi(port=spec.spi_port, device=spec.spi_device,
                               bus_speed_hz=spec.spi_speed_hz,
                               gpio_DC=spec.gpio_dc, gpio_RST=spec.gpio_rst)
    except ImportError as exc:  # spidev or RPi.GPIO missing: the pi extra was not installed
        raise DriverUnavailable(f"SPI display needs spidev and rpi-lgpio "
                                f"(pip install 'loyalty-kiosk[pi]'): {exc}") from exc


def make_luma_device(spec: DisplaySpec, interface: Any = None) -> Any:
    """Open the configured luma.oled device on ``interface`` (default: the configured bus)."""
    try:
        from luma.core.error import DeviceDisplayModeError
        from luma.oled import device as oled
    except ImportError as exc:
        raise DriverUnavailable("luma.oled is not installed") from exc
    driver = getattr(oled, spec.driver, None)
    if driver is None:
        raise DriverUnavailable(f"this luma.oled has no {spec.driver} driver; upgrade luma.oled")
    # rotate=0: LumaPanel turns frames itself. luma.oled 3.16.0's ch1115.display() walks
    # the rotated image with the logical ``self.width`` instead of ``self._w`` and drops
    # half of every portrait frame (tests/unit/test_display_devices.py caught it).
    options: dict[str, Any] = {"width": spec.width, "height": spec.height, "rotate": 0}
    if spec.kind == "greyscale":
        options["mode"] = spec.mode  # greyscale classes would also take "1"; ours draw grey
    bus = interface if interface is not None else make_interface(spec)
    try:
        device = driver(bus, **options)
        device.contrast(spec.contrast)
    except BaseException as exc:
        # luma.core 2.6.0 (luma/core/interface/serial.py): i2c() opens the bus with
        # smbus2.SMBus(port) in its constructor, spi() opens spidev there; the panel's
        # constructor then writes its init commands. When that fails (no panel answering),
        # nobody holds the interface: close it (i2c.cleanup() closes a bus it opened,
        # spi.cleanup() closes spidev and its GPIO pins), or each retry keeps a descriptor.
        if interface is None:
            _release(bus)
        if isinstance(exc, DeviceDisplayModeError):
            raise DriverError(f"{spec.driver} does not support {spec.width}x{spec.height}: "
                              f"{exc}") from exc
        raise
    return device


def _release(bus: Any) -> None:
    try:
        bus.cleanup()
    except Exception as exc:  # the bus is being given up anyway
        log.debug("closing the display bus: %s", exc)


_QUARTER_TURNS = {1: "ROTATE_270", 2: "ROTATE_180", 3: "ROTATE_90"}
"""luma's ``rotate`` r turns the frame r * 90 degrees clockwise (luma.core ``mixin.preprocess``)."""


class LumaPanel:
    """The configured panel, opened on first use and reopened after a failure.

    ``size`` (as drawn, after ``rotate``) and ``mode`` come from the spec, so
    the kiosk can render for a panel that is not plugged in yet.
    """

    def __init__(self, spec: DisplaySpec, interface: Any = None) -> None:
        self.spec = spec
        self.size = spec.size
        self.mode = spec.mode
        self._interface = interface
        self._device: Any = None
        self._contrast = spec.contrast

    def open(self) -> None:
        """Open the device now (start-up does this to report a missing panel at once)."""
        if self._device is None:
            self._device = make_luma_device(self.spec, self._interface)
            if self._contrast != self.spec.contrast:
                self._device.contrast(self._contrast)

    def display(self, image: Any) -> None:
        """Send one frame; on any error close the device so the next frame reopens it."""
        if self.spec.rotate:
            from PIL import Image

            image = image.transpose(getattr(Image.Transpose, _QUARTER_TURNS[self.spec.rotate]))
        try:
            self.open()
            self._device.display(image)
        except Exception:
            self.close()
            raise

    def contrast(self, level: int) -> None:
        """Set the brightness (0-255); kept for when the panel is reopened."""
        self._contrast = level
        if self._device is not None:
            self._device.contrast(level)

    def close(self) -> None:
        """Release the bus (without blanking: the panel may be gone)."""
        device, self._device = self._device, None
        if device is not None:
            try:
                device._serial_interface.cleanup()  # luma's cleanup() would write to the panel
            except Exception as exc:
                log.debug("closing the display bus: %s", exc)

    def cleanup(self) -> None:
        """Blank the panel and release the bus (luma's shutdown)."""
        device, self._device = self._device, None
        if device is not None:
            device.cleanup()


class DisplayWorker:
    """Owns the device; ``show`` never blocks the caller on the bus."""

    def __init__(self, device: FrameSink, first_retry_s: float = RETRY_FIRST_S) -> None:
        self.device = device
        self._first_retry_s = first_retry_s
        self._lock = threading.Lock()
        self._newest: Any = None
        self._contrast: int | None = None
        self._ready = threading.Event()
        self._worker = Worker("kiosk-display", self._run)
        self.frames_shown = 0
        self.frames_skipped = 0
        self.failures = 0
        self.fault: str | None = None
        """Why the panel is not showing frames right now, or None while it works."""
        self._on_problem: OnProblem = no_problem_report

    @property
    def size(self) -> tuple[int, int]:
        """The device's (width, height) in pixels, as drawn."""
        return self.device.size

    @property
    def mode(self) -> str:
        """The image mode the device takes; other frames are converted on the display thread."""
        return self.device.mode

    def start(self, on_problem: OnProblem = no_problem_report) -> None:
        """Start the display thread. A failing panel is reported to ``on_problem`` as
        ``("display", reason)`` and ``("display", "")`` once it works again, from the display
        thread: the same contract as :meth:`~drivers.base.CodeSource.start`."""
        self._on_problem = on_problem
        self._worker.start()

    def show(self, image: Any) -> None:
        """Queue ``image`` as the next frame, replacing any frame not yet shown."""
        with self._lock:
            if self._newest is not None:
                self.frames_skipped += 1
            self._newest = image
        self._ready.set()

    def set_contrast(self, level: int) -> None:
        """Change the brightness from the display thread (it owns the bus)."""
        with self._lock:
            self._contrast = level
        self._ready.set()

    def _run(self, stopping: threading.Event) -> None:
        pending: Any = None
        retry_at = 0.0
        backoff = Backoff(self._first_retry_s, RETRY_MAX_S)
        while True:
            wait = max(0.0, retry_at - time.monotonic()) if pending is not None else 0.5
            self._ready.wait(wait)
            with self._lock:
                newest, self._newest = self._newest, None
                contrast, self._contrast = self._contrast, None
                self._ready.clear()
            if newest is not None:
                pending = newest
            if contrast is not None:
                self._apply_contrast(contrast)
            if pending is None or time.monotonic() < retry_at:
                if stopping.is_set():
                    return
                continue
            try:
                self._push(pending)
            except Exception as exc:  # a flaky bus must not kill the display thread
                self.failures += 1
                if self.fault is None:
                    log.exception("display write failed; retrying in the background")
                reason = f"{type(exc).__name__}: {exc}"
                if self.fault != f"display: {reason}":
                    self.fault = f"display: {reason}"
                    self._on_problem("display", reason)
                retry_at = time.monotonic() + backoff.next()
                if stopping.is_set():
                    return
                continue
            pending = None
            backoff.reset()
            if self.fault is not None:
                log.warning("display works again after %d failed writes", self.failures)
                self.fault = None
                self._on_problem("display", "")

    def _push(self, image: Any) -> None:
        if image.mode != self.device.mode:
            image = image.convert(self.device.mode)  # once per frame, off the controller thread
        self.device.display(image)
        self.frames_shown += 1

    def _apply_contrast(self, level: int) -> None:
        set_contrast = getattr(self.device, "contrast", None)
        if set_contrast is None:
            return
        try:
            set_contrast(level)
        except Exception as exc:  # the next frame's failure is what gets reported
            log.debug("contrast not set: %s", exc)

    def stop(self, timeout: float = 2.0) -> None:
        """Show the last queued frame, then stop the thread."""
        self._worker.stopping.set()
        self._ready.set()
        self._worker.stop(timeout)
