"""The camera code source: a capture thread that gates frames, decodes them and hands up codes.

Frames come from a :class:`FrameSource` — picamera2 on a Pi, or the simulated
camera in :mod:`drivers.sim` — and never leave this thread: only decoded,
debounced code strings go up to the application.

A busy counter must not cost a core: :class:`MotionGate` decodes a frame only
when *card-like detail* appears in the zone where customers hold their cards
(``camera.zone``) — not when anything moves anywhere. People walking past
behind the customer, flickering lamps and glare change the picture all the
time; a member card adds fine detail in both directions (QR modules) that the
scene did not have. With nothing happening the camera also drops to
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

BLOCK = 16
"""The gate judges the zone in blocks of 16x16 pixels (576 in the default zone at 640x480)."""
STRIDE = 8
"""Detail is measured along every 8th row (across) and every 8th column (down): two lines
through each block, each way."""
DETAIL_LEVEL = 8.0
"""A block counts as having gained card-like detail when its mean step between neighbouring
pixels rose by more than this many grey levels in *both* directions. A QR code's modules
give 20-30 in both; the edge of a person or a shelf gives one direction only, a corner
well under 8; sensor noise about 3, which the comparison cancels."""
LOOK_S = 0.3
"""Keep decoding this long after detail last appeared (a card slowing down is blurred at
first; it is read once it is held still)."""
GLANCE_S = 0.1
"""While no card is in view or being looked for, the gate measures a frame only this often
(every other frame at 15 fps): bringing a card up and holding it still takes longer, and
the measure is most of what an empty counter costs."""
SCENE_S = 5.0
"""The time over which the gate averages what the zone usually looks like. A card held for
2 s moves the average a third of the way, so the next card shown at the same spot is news."""
IN_VIEW_S = 0.5
"""While a code is in view and the zone does not change, decode it again this often: often
enough that :class:`~drivers.base.Debounce` (out of view after 1 s without a read) never
takes a card held still for a new one."""

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

    The gate measures each block's *detail*: the mean absolute step between
    neighbouring pixels, across and down, scaled by the zone's brightness (so
    a lamp's flicker or a cloud changes nothing). A frame is decoded when more
    than ``threshold`` of the zone's blocks gained detail in both directions
    over what they had both in the last decoded frame and, on average, over
    the last few seconds (``SCENE_S``), and for ``LOOK_S`` after that; while a
    code is in view, when detail vanishes (the card is taken away) and every
    ``IN_VIEW_S``. So shelves that a passer-by uncovers again are not news
    (the average remembers them), an object that stays is looked at once (the
    decoded frame remembers it), and detail that goes away (glare, a person in
    front of the shelves) never triggers a decode.
    """

    def __init__(self, threshold: float, idle_after_s: float,
                 zone: tuple[int, int, int, int] | None = None) -> None:
        self._threshold = threshold
        self._idle_after_s = idle_after_s
        self._zone = zone
        self._scene: Any = None  # each block's detail, averaged over the last few seconds
        self._reference: Any = None  # each block's detail in the last decoded frame
        self._previous: Any = None
        self._appeared_at = self._moved_at = self._decoded_at = self._seen_at = -1e9
        self._glanced_at = -1e9
        self._columns: Any = None
        self.code_in_view = False

    def should_decode(self, plane: Plane, now: float) -> bool:
        """True when ``plane`` may show a card not looked at yet; remembers when the zone
        last changed (for :meth:`active`)."""
        import numpy as np

        if not self.code_in_view and now - self._appeared_at >= LOOK_S \
                and now - self._glanced_at < GLANCE_S:
            return False  # nothing going on: a glance every GLANCE_S is enough
        self._glanced_at = now
        detail = self._detail(plane)
        if self._scene is None or self._scene.shape != detail.shape:  # the first frame
            self._scene = self._reference = self._previous = detail
            self._moved_at = self._appeared_at = self._decoded_at = self._seen_at = now
            return True
        least = self._threshold * detail[0].size
        if np.count_nonzero(np.abs(detail - self._previous) > DETAIL_LEVEL):
            self._moved_at = now
        self._previous = detail
        known = np.maximum(self._reference, self._scene)
        appeared = np.count_nonzero(np.minimum(*(detail - known)) > DETAIL_LEVEL) > least
        weight = min(1.0, max(0.0, now - self._seen_at) / SCENE_S)
        self._scene = self._scene + weight * (detail - self._scene)
        self._seen_at = now
        if appeared:
            self._appeared_at = now
        if self.code_in_view:  # looked at again when it goes (or moves) and now and then
            vanished = np.count_nonzero(
                np.minimum(*(self._reference - detail)) > DETAIL_LEVEL) > least
            look = vanished or now - self._decoded_at >= IN_VIEW_S
        else:
            look = appeared or now - self._appeared_at < LOOK_S
        if look:
            self._reference = detail
            self._decoded_at = now
        return look

    def _detail(self, plane: Plane) -> Any:
        """Per block of the zone: (detail across, detail down), in grey levels a pixel step,
        as if the zone's mean brightness were mid-grey. Steps across are taken along every
        ``STRIDE``-th row, steps down along every ``STRIDE``-th column (about 60 us for the
        default zone at 640x480 on the development machine)."""
        import numpy as np

        x, y, width, height = self._zone or (0, 0, plane.shape[1], plane.shape[0])
        width = min(width, plane.shape[1] - x - 1) // BLOCK * BLOCK  # one pixel to step into
        height = min(height, plane.shape[0] - y - 1) // BLOCK * BLOCK
        rows = plane[y:y + height:STRIDE, x:x + width + 1]
        cols = np.ascontiguousarray(plane[y:y + height + 1, x:x + width:STRIDE])  # gathered once
        per = BLOCK // STRIDE
        blocks = (height // BLOCK, width // BLOCK)
        across = _steps(rows[:, :-1], rows[:, 1:])  # (height / STRIDE, width)
        down = _steps(cols[:-1], cols[1:])  # (height, width / STRIDE)
        across_sums = np.add.reduceat(across.reshape(blocks[0], per, width).sum(
            axis=1, dtype=np.uint16), self._starts(width), axis=1)
        down_sums = down.reshape(blocks[0], BLOCK, width // STRIDE).sum(
            axis=1, dtype=np.uint16).reshape(blocks[0], blocks[1], per).sum(axis=2)
        scale = 128.0 / max(1.0, float(plane[y:y + height:BLOCK, x:x + width:BLOCK].mean()))
        return np.stack((across_sums, down_sums)).astype(np.float32) * (scale / (per * BLOCK))

    def _starts(self, width: int) -> Any:
        """Where each block column starts (made once per zone width)."""
        import numpy as np

        if self._columns is None or self._columns[-1] != width - BLOCK:
            self._columns = np.arange(0, width, BLOCK)
        return self._columns

    def decoded(self, found: bool) -> None:
        """The decoder's verdict on the frame the gate let through."""
        self.code_in_view = found

    def active(self, now: float) -> bool:
        """False once nothing has changed in the zone and no code was seen for
        ``idle_after_s``."""
        return self.code_in_view or now - self._moved_at < self._idle_after_s


def _steps(a: Plane, b: Plane) -> Any:
    """``|a - b|`` for two uint8 arrays, in uint8 (no wider copy)."""
    import numpy as np

    high = np.maximum(a, b)
    return np.subtract(high, np.minimum(a, b), out=high)


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
        self.gate = MotionGate(spec.motion_threshold, spec.idle_after_s, spec.card_zone)
        self.decoder = decoder
        self._roi = spec.region

    def look(self, plane: Plane, now: float) -> list[str] | None:
        """The codes in ``plane`` (seen at monotonic time ``now``); None if not decoded."""
        if not self.gate.should_decode(plane, now):  # the zone is in whole-frame pixels
            return None
        codes = self.decoder.decode(region(plane, self._roi))
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
