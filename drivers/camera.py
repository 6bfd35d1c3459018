"""The camera code source: a capture thread that decodes frames and hands up codes.

Frames come from a :class:`FrameSource` — picamera2 on a Pi, or the simulated
camera in :mod:`drivers.sim` — and never leave this thread: only decoded,
de-duplicated code strings go up to the application.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from drivers import DriverError, DriverUnavailable
from drivers.base import Cooldown, OnCode, Worker
from drivers.qr import QrDecoder
from drivers.specs import CameraSpec

log = logging.getLogger(__name__)

Frame = tuple[Any, int, int]
"""``(pixels, width, height)``: 8-bit grayscale, row-major, a buffer zbar can point into."""


class FrameSource(Protocol):
    """Produces grayscale frames; ``read`` returns None when there is nothing to look at."""

    def open(self) -> None:
        """Acquire the sensor (or spool)."""

    def read(self) -> Frame | None:
        """Return the next frame, pacing itself to the frame rate where the hardware does."""

    def close(self) -> None:
        """Release the sensor."""


class CameraSource:
    """A :class:`~drivers.base.CodeSource` that decodes QR codes from a frame source."""

    def __init__(self, frames: FrameSource, spec: CameraSpec, name: str = "camera") -> None:
        self.name = name
        self.frames = frames
        self._idle_wait = 1.0 / spec.fps
        self._cooldown = Cooldown(spec.cooldown_s)
        self._worker: Worker | None = None
        self.frames_decoded = 0

    def start(self, on_code: OnCode) -> None:
        """Open the frame source and start the capture thread."""
        self.frames.open()
        self._worker = Worker(f"kiosk-{self.name}", lambda stop: self._run(stop, on_code))
        self._worker.start()

    def _run(self, stopping: threading.Event, on_code: OnCode) -> None:
        decoder = QrDecoder()  # zbar scanners are not shared between threads
        try:
            while not stopping.is_set():
                try:
                    frame = self.frames.read()
                except Exception:  # a sensor hiccup must not end the camera for good
                    log.exception("%s: no frame; retrying in 1 s", self.name)
                    stopping.wait(1.0)
                    continue
                if frame is None:
                    stopping.wait(self._idle_wait)
                    continue
                try:
                    codes = decoder.decode(*frame)
                except DriverError as exc:
                    log.warning("%s: frame skipped: %s", self.name, exc)
                    continue
                self.frames_decoded += 1
                for code in codes:
                    if self._cooldown.accept(code):
                        on_code(code, self.name, time.time())
        finally:
            decoder.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the capture thread, then release the sensor."""
        if self._worker is not None:
            self._worker.stop(timeout)
        self.frames.close()


class Picamera2Frames:
    """Frames from the Pi camera: the Y plane of the low-resolution YUV420 stream.

    The Y plane *is* a grayscale image, so there is no colour conversion. The
    rows of the lores array are ``stride`` bytes wide; zbar is given the whole
    stride (the padding columns are blank), so the plane is decoded in place.
    """

    def __init__(self, spec: CameraSpec) -> None:
        self._spec = spec
        self._camera: Any = None

    def open(self) -> None:
        """Configure and start picamera2 with a lores YUV420 stream."""
        try:
            from picamera2 import Picamera2
        except ImportError as exc:  # not a Pi, or python3-picamera2 missing
            raise DriverUnavailable(
                "picamera2 is not installed: apt install python3-picamera2 "
                "(or set camera.backend = \"sim\")"
            ) from exc
        size = (self._spec.width, self._spec.height)
        self._camera = Picamera2()
        config = self._camera.create_preview_configuration(
            main={"size": size}, lores={"size": size, "format": "YUV420"}, buffer_count=3
        )
        self._camera.configure(config)
        self._camera.start()

    def read(self) -> Frame | None:
        """Capture one lores frame (blocks until the sensor delivers it)."""
        array = self._camera.capture_array("lores")
        height = self._spec.height
        return array[:height], array.shape[1], height

    def close(self) -> None:
        """Stop and release the camera."""
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None
