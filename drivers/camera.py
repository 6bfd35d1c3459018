"""The camera code source: a capture thread that gates frames, decodes them and hands up codes.

Frames come from a :class:`FrameSource` — picamera2 on a Pi, or the simulated
camera in :mod:`drivers.sim` — and never leave this thread: only decoded,
debounced code strings go up to the application.

An empty counter must not cost a core: :class:`MotionGate` decodes a frame only
when it differs from the last decoded one, while a code is in view, and for a
moment after the scene moved (a card that was blurred while moving is read
once it is held still). With nothing happening the camera also drops to
``idle_fps``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Protocol

from drivers import DriverError, DriverUnavailable
from drivers.base import Debounce, OnCode, OnProblem, Worker, keep_open, no_problem_report
from drivers.qr import Decoder, make_decoder
from drivers.specs import CameraSpec

log = logging.getLogger(__name__)

Plane = Any
"""A 2-D ``uint8`` numpy array (rows x columns): an 8-bit grayscale frame, possibly a
strided view into the camera's buffer."""

SAMPLE_STEP = 8
"""The gate compares every 8th pixel of every 8th row: 4,800 of a 640x480 frame."""
CHANGE_LEVEL = 24
"""A sampled pixel counts as changed when it moved by more than this many grey
levels: about four times the frame-to-frame noise of a Pi camera in shop light."""
SETTLE_S = 1.0
"""Keep decoding this long after the scene last moved."""


class FrameSource(Protocol):
    """Produces grayscale frames; ``read`` returns None when there is nothing to look at."""

    def open(self) -> None:
        """Acquire the sensor (or spool); raises when it is not there."""

    def read(self) -> Plane | None:
        """The next frame, paced to the frame rate; valid until the next ``read`` or ``close``."""

    def set_fps(self, fps: float) -> None:
        """Deliver this many frames a second from now on."""

    def close(self) -> None:
        """Release the sensor."""


class MotionGate:
    """Says which frames are worth decoding. Pure: the caller passes the time.

    The test is a strided difference against the last *decoded* frame (not the
    previous one), so a slow change — the light fading — adds up and is looked
    at once, and sensor noise, which moves a pixel by a few levels, never is.
    """

    def __init__(self, threshold: float, idle_after_s: float) -> None:
        self._threshold = threshold
        self._idle_after_s = idle_after_s
        self._reference: Any = None
        self._moved_at = -1e9
        self.code_in_view = False

    def should_decode(self, plane: Plane, now: float) -> bool:
        """True when ``plane`` may show something new (and remembers when the scene moved)."""
        import numpy as np

        sample = plane[::SAMPLE_STEP, ::SAMPLE_STEP]
        reference = self._reference
        if reference is None or reference.shape != sample.shape:
            moved = True
        else:
            difference = np.abs(np.subtract(sample, reference, dtype=np.int16))
            moved = np.count_nonzero(difference > CHANGE_LEVEL) > self._threshold * sample.size
        if moved:
            self._moved_at = now
        if moved or self.code_in_view or now - self._moved_at < SETTLE_S:
            self._reference = sample.copy()
            return True
        return False

    def decoded(self, found: bool) -> None:
        """The decoder's verdict on the frame the gate let through."""
        self.code_in_view = found

    def active(self, now: float) -> bool:
        """False once nothing has moved and no code was seen for ``idle_after_s``."""
        return self.code_in_view or now - self._moved_at < self._idle_after_s


def region(plane: Plane, roi: tuple[int, int, int, int] | None) -> Plane:
    """The region of interest ``(x, y, width, height)`` of a plane, as a view (no copy)."""
    if roi is None:
        return plane
    x, y, width, height = roi
    return plane[y:y + height, x:x + width]


class FrameReader:
    """What the capture thread does with each frame: cut the region, gate, decode.

    ``look`` returns the codes in a frame, or None when the gate skipped it.
    """

    def __init__(self, spec: CameraSpec, decoder: Decoder) -> None:
        self.gate = MotionGate(spec.motion_threshold, spec.idle_after_s)
        self.decoder = decoder
        self._roi = spec.region

    def look(self, plane: Plane, now: float) -> list[str] | None:
        """The codes in ``plane`` (seen at monotonic time ``now``); None if not decoded."""
        plane = region(plane, self._roi)
        if not self.gate.should_decode(plane, now):
            return None
        codes = self.decoder.decode(plane)
        self.gate.decoded(bool(codes))
        return codes


class CameraSource:
    """A :class:`~drivers.base.CodeSource` that decodes QR codes from a frame source."""

    def __init__(self, frames: FrameSource, spec: CameraSpec, name: str = "camera") -> None:
        self.name = name
        self.frames = frames
        self.spec = spec
        self._debounce = Debounce(spec.cooldown_s)
        self._worker: Worker | None = None
        self.frames_seen = 0
        self.frames_decoded = 0
        self.decoder_name = ""

    def start(self, on_code: OnCode, on_problem: OnProblem = no_problem_report) -> None:
        """Start the capture thread; the camera is opened (and reopened) there.

        The decoder is made here so that a missing library stops start-up with its
        reason instead of leaving a thread that decodes nothing.
        """
        decoder = make_decoder(self.spec.decoder, try_downscale=self.spec.try_downscale)
        self.decoder_name = decoder.name
        self._worker = Worker(f"kiosk-{self.name}",
                              lambda stop: self._run(stop, decoder, on_code, on_problem))
        self._worker.start()

    def _run(self, stopping: threading.Event, decoder: Decoder, on_code: OnCode,
             on_problem: OnProblem) -> None:
        try:
            keep_open(self.name, stopping, on_problem, self._open,
                      lambda _frames: self._capture(stopping, decoder, on_code), self._close)
        finally:
            decoder.close()

    def _open(self) -> FrameSource:
        self.frames.open()
        return self.frames

    def _close(self, frames: FrameSource) -> None:
        frames.close()

    def _capture(self, stopping: threading.Event, decoder: Decoder, on_code: OnCode) -> None:
        spec = self.spec
        looker = FrameReader(spec, decoder)
        fps = spec.fps
        while not stopping.is_set():
            plane = self.frames.read()  # raises when the camera fails: keep_open reopens it
            now = time.monotonic()
            if plane is None:
                stopping.wait(1.0 / fps)
                continue
            self.frames_seen += 1
            try:
                codes = looker.look(plane, now)
            except DriverError as exc:
                log.warning("%s: frame skipped: %s", self.name, exc)
                continue
            if codes is not None:
                self.frames_decoded += 1
                for code in codes:
                    if self._debounce.accept(code):
                        on_code(code, self.name, time.time())
            wanted = spec.fps if looker.gate.active(now) else min(spec.idle_fps, spec.fps)
            if wanted != fps:
                fps = wanted
                self.frames.set_fps(fps)

    def cpu_seconds(self) -> float:
        """CPU time the capture thread has used (for the benchmark and health)."""
        return self._worker.cpu_seconds() if self._worker is not None else 0.0

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the capture thread (which releases the sensor)."""
        if self._worker is not None:
            self._worker.stop(timeout)


class Picamera2Frames:
    """Frames from the Pi camera: the Y plane of the low-resolution YUV420 stream, in place.

    Checked against raspberrypi/picamera2 (commit 3e6dff0, picamera2/picamera2.py and
    request.py): ``capture_array`` copies every frame (``make_array`` ends in
    ``np.copy``), so this holds the completed request instead and reads the
    buffer through ``MappedArray`` (``_make_array_shared``: a ``(h*3/2, stride)``
    view, no copy), releasing it at the next ``read``. The Y plane *is* a
    grayscale image: no colour conversion. ``create_preview_configuration``
    merges our ``controls`` over its default ``FrameDurationLimits`` of
    (100, 83333) µs — "as fast as possible" — so the rate from config is what
    the sensor delivers; ``AfMode`` is set to continuous where the module has
    autofocus (Camera Module 3: ``"AfMode" in camera_controls``).
    """

    def __init__(self, spec: CameraSpec) -> None:
        self._spec = spec
        self._camera: Any = None
        self._held: contextlib.ExitStack | None = None
        self._mapped_array: Any = None

    def open(self) -> None:
        """Configure and start picamera2 with a lores YUV420 stream at the configured rate."""
        try:
            from picamera2 import MappedArray, Picamera2
        except ImportError as exc:  # not a Pi, or python3-picamera2 missing
            raise DriverUnavailable(
                "picamera2 is not installed: apt install python3-picamera2 "
                "(or set camera.backend = \"sim\")"
            ) from exc
        self._mapped_array = MappedArray
        size = (self._spec.width, self._spec.height)
        camera = Picamera2()
        try:
            controls: dict[str, Any] = {"FrameDurationLimits": _frame_duration(self._spec.fps)}
            if "AfMode" in camera.camera_controls:
                from libcamera import controls as libcamera_controls

                controls["AfMode"] = libcamera_controls.AfModeEnum.Continuous
            config = camera.create_preview_configuration(
                main={"size": size}, lores={"size": size, "format": "YUV420"},
                buffer_count=4, controls=controls)
            camera.configure(config)
            camera.start()
        except Exception:
            camera.close()
            raise
        self._camera = camera

    def read(self) -> Plane:
        """The Y plane of the next lores frame (blocks until the sensor delivers it)."""
        self._release()
        held = contextlib.ExitStack()
        request = self._camera.capture_request()
        held.callback(request.release)
        mapped = held.enter_context(self._mapped_array(request, "lores", write=False))
        self._held = held
        return mapped.array[:self._spec.height, :self._spec.width]

    def set_fps(self, fps: float) -> None:
        """Change the sensor's frame rate (idle or active)."""
        self._camera.set_controls({"FrameDurationLimits": _frame_duration(fps)})

    def _release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.close()

    def close(self) -> None:
        """Hand back the frame in use, stop and release the camera."""
        if self._camera is not None:
            camera, self._camera = self._camera, None
            try:
                self._release()
                camera.stop()
            finally:
                camera.close()


def _frame_duration(fps: float) -> tuple[int, int]:
    """picamera2's ``FrameDurationLimits`` (min, max in µs) for exactly ``fps``."""
    micros = round(1_000_000 / fps)
    return micros, micros
