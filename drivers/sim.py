"""The simulated hardware set: what the demo, the tests and integrators run on.

Only the Pi camera is faked; everything else is the real library on a stand-in
device: pyserial on a pseudo-terminal, gpiozero on its own ``MockFactory``,
luma's own ``dummy`` device.

Any program, in any language, can drive a running simulated kiosk:

* **camera** — drop an image file into the spool directory. It is held in front
  of the camera for ``hold_s`` seconds, then removed. Write to a name starting
  with ``.`` and rename, so a half-written file is never read.
* **serial** — write a code and CR or LF (or STX, code, ETX) to the link path, e.g.
  ``printf 'LOY-ALICE01\\r' > /run/kiosk/serial``.
* **display** — every frame is saved (atomically) as a PNG, in the configured
  panel's size, mode and rotation.
* **lights** — the light's and buzzer's state is kept in a small JSON file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import select
import struct
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from drivers import DriverError, DriverUnavailable
from drivers.base import Worker
from drivers.files import write_atomically
from drivers.specs import CameraSpec, DisplaySpec, SerialSpec

if TYPE_CHECKING:
    from drivers.lights import Lights

log = logging.getLogger(__name__)

TESTING_EXTRA = ("the simulated devices need {what}, which a plain install lacks: "
                 "pip install 'loyalty-kiosk[testing]'")
"""Why a simulated device cannot be made: the extra that brings what it needs."""

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".webp"}
GIVE_UP_S = 2.0
"""How long an unreadable spool file may stay before it is thrown away (it may be mid-write)."""
MAX_SPOOL_PIXELS = 12_000_000
"""The largest spool image decoded (a 12-megapixel photo, 4000x3000): checked in the file's
header before decoding, since decoding a larger one raises the daemon's memory for good
(thirty 9000x9000 images took it from 60 to 118 MB), while no card needs more."""


class SimCamera:
    """A :class:`~drivers.camera.FrameSource` that films a counter, like a sensor would.

    It delivers ``fps`` frames a second, always: the empty counter (a grey
    background, or any *scene* set with :meth:`set_scene`, held indefinitely)
    with a little sensor noise, and a card from the spool directory or
    :meth:`show` placed on it for ``hold_s``. So the camera thread does the same
    work it does on a Pi, including looking at an empty counter. The noisy
    frames are made once per scene (a sensor's DMA costs the CPU nothing
    either), in ``NOISY_FRAMES`` variants so consecutive frames differ.

    :meth:`unplug` makes the sensor fail (reads and opens raise) until
    :meth:`plug`, as a loose ribbon cable does.
    """

    NOISY_FRAMES = 4
    NOISE = 2.0
    """Standard deviation of the sensor noise, in grey levels."""

    def __init__(self, spec: CameraSpec) -> None:
        self._size = (spec.width, spec.height)
        self._hold_s = spec.hold_s
        self._frame_s = 1.0 / spec.fps
        self._next_frame = 0.0
        self.spool = Path(spec.spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True)  # other programs may write at once
        self._shown: queue.SimpleQueue[Image.Image] = queue.SimpleQueue()
        self._scene: Image.Image = Image.new("L", self._size, 190)
        self._empty: list[Any] = []
        self._current: list[Any] | None = None
        self._count = 0
        self._until = 0.0
        self._current_file: Path | None = None
        self._next_poll = 0.0
        self._plugged = threading.Event()
        self._plugged.set()
        self.spool_refused = 0
        """Spool images refused unread for their size (see :data:`MAX_SPOOL_PIXELS`)."""

    def show(self, image: Image.Image) -> None:
        """Hold ``image`` in front of the camera (after any image already waiting)."""
        self._shown.put(image)

    def set_scene(self, image: Image.Image | None) -> None:
        """What the camera sees when no card is held, from now on; None: an empty grey counter.

        A scene holding a QR code is a card left lying in view.
        """
        scene = Image.new("L", self._size, 190)
        if image is not None:
            self._paste(scene, image)
        self._scene = scene
        self._empty = []

    def unplug(self) -> None:
        """The sensor fails from now on: ``read`` and ``open`` raise."""
        self._plugged.clear()

    def plug(self) -> None:
        """The sensor works again."""
        self._plugged.set()

    def open(self) -> None:
        """Create the spool directory."""
        if not self._plugged.is_set():
            raise DriverError("no camera detected (simulated)")
        self.spool.mkdir(parents=True, exist_ok=True)

    def set_fps(self, fps: float) -> None:
        """Deliver ``fps`` frames a second from now on."""
        self._frame_s = 1.0 / fps

    def read(self) -> Any:
        """The frame in front of the camera now (a 2-D uint8 array), at most ``fps`` a second."""
        now = time.monotonic()
        if now < self._next_frame:
            time.sleep(self._next_frame - now)
            now = time.monotonic()
        self._next_frame = now + self._frame_s
        if not self._plugged.is_set():
            raise DriverError("camera pipeline stopped (simulated)")
        self._count += 1
        if self._current is not None and now < self._until:
            return self._current[self._count % len(self._current)]
        self._put_away()
        image = self._next_image(now)
        if image is None:
            if not self._empty:
                self._empty = self._noisy(self._scene)
            return self._empty[self._count % len(self._empty)]
        canvas = self._scene.copy()
        self._paste(canvas, image)
        self._current = self._noisy(canvas)
        self._until = now + self._hold_s
        return self._current[0]

    def _paste(self, canvas: Image.Image, image: Image.Image) -> None:
        image = image.convert("L")
        image.thumbnail(self._size)
        canvas.paste(image, ((self._size[0] - image.width) // 2,
                             (self._size[1] - image.height) // 2))

    def _noisy(self, image: Image.Image) -> list[Any]:
        import numpy as np

        clean = np.asarray(image)
        rng = np.random.default_rng(self._count)
        frames = [np.empty_like(clean) for _ in range(self.NOISY_FRAMES)]
        # A band of rows at a time: the float temporaries stay small (a 640x480 frame in
        # float would be 1.2-2.4 MB, which glibc then keeps in the capture thread's arena).
        for top in range(0, clean.shape[0], 32):
            band = clean[top:top + 32]
            noisy = np.empty(band.shape, np.float32)
            for frame in frames:
                rng.standard_normal(dtype=np.float32, out=noisy)
                noisy *= self.NOISE
                noisy += band
                np.rint(np.clip(noisy, 0, 255, out=noisy), out=noisy)
                frame[top:top + 32] = noisy
        return frames

    def _put_away(self) -> None:
        self._current = None
        if self._current_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self._current_file.unlink()
            self._current_file = None

    def _next_image(self, now: float) -> Image.Image | None:
        with contextlib.suppress(queue.Empty):
            return self._shown.get_nowait()
        if now < self._next_poll:
            return None
        self._next_poll = now + 0.05
        try:
            names = sorted(p for p in self.spool.iterdir()
                           if not p.name.startswith(".") and p.is_file())
        except FileNotFoundError:
            return None
        for path in names:
            image = self._load(path)
            if image is not None:
                self._current_file = path
                return image
        return None

    def _load(self, path: Path) -> Image.Image | None:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            log.warning("camera spool: %s is not an image file; removed", path.name)
            path.unlink(missing_ok=True)
            return None
        try:
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
                if width * height > MAX_SPOOL_PIXELS:
                    self.spool_refused += 1
                    log.warning("camera spool: %s is too large (%dx%d, over %d pixels); "
                                "removed", path.name, width, height, MAX_SPOOL_PIXELS)
                    path.unlink(missing_ok=True)
                    return None
                image.draft("L", self._size)  # a JPEG is decoded at a smaller size already
                image.load()
                return image
        except Exception as exc:  # truncated, corrupt, a decompression bomb: not a card
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime > GIVE_UP_S:
                    log.warning("camera spool: cannot read %s (%s); removed", path.name, exc)
                    path.unlink()
            return None

    def close(self) -> None:
        """Nothing to release; a card being shown is put away."""
        self._put_away()


class PtySerial:
    """A serial code reader made of pseudo-terminals.

    pyserial (the real reader code) opens the *device* side of one pty. A
    second pty's device side is linked at ``spec.sim_link`` for other
    programs to write to; a bridge thread copies what they type to the
    reader, as a USB scanner would send it.

    pyserial flushes input when it opens a port, so the bridge holds what is
    typed until the reader says it is open (``reader_open``): a code typed
    while the kiosk starts is read, not lost.
    """

    def __init__(self, spec: SerialSpec) -> None:
        self.link = Path(spec.sim_link)
        self._reader_master, self._reader_slave = os.openpty()
        self._typing_master, self._typing_slave = os.openpty()
        for fd in (self._reader_slave, self._typing_slave):
            tty.setraw(fd)  # no echo, no line editing, no CR/LF translation
        self.device = os.ttyname(self._reader_slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(os.ttyname(self._typing_slave))
        self._framing = spec.framing
        self.reader_open = threading.Event()
        self._bridge = Worker("kiosk-sim-serial", self._copy)
        self._bridge.start()

    def type(self, code: str) -> None:
        """Send ``code`` framed as the reader sends it: a CR after it, or between STX and ETX.

        It goes in where other programs write, so it takes the same path.
        """
        framed = f"\x02{code}\x03" if self._framing == "stx-etx" else f"{code}\r"
        self.send(framed.encode())

    def send(self, data: bytes) -> None:
        """Send raw bytes down the line (noise, a half frame, a 4 KB line)."""
        os.write(self._typing_slave, data)

    def _copy(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            if not self.reader_open.wait(0.2):
                continue
            ready, _, _ = select.select([self._typing_master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(self._typing_master, 4096)
                except OSError:
                    continue
                os.write(self._reader_master, data)

    def close(self) -> None:
        """Stop the bridge, remove the link and close every pty end."""
        self._bridge.stop()
        with contextlib.suppress(OSError):
            if self.link.is_symlink():
                self.link.unlink()
        for fd in (self._reader_master, self._reader_slave,
                   self._typing_master, self._typing_slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def make_dummy_display(spec: DisplaySpec) -> Any:
    """luma's ``dummy`` device in the configured panel's size, mode and rotation.

    It also saves each frame as a PNG (as drawn, i.e. as the customer sees it)
    and tells ``listeners``. Like the real panels it refuses a frame of the
    wrong size (luma.core 2.6.0 ``device.dummy.display`` asserts it).
    """
    from luma.core.device import dummy

    class PngDummy(dummy):
        """A dummy OLED whose frames can be watched (``listeners``) and seen on disk."""

        def __init__(self) -> None:
            super().__init__(width=spec.width, height=spec.height, rotate=spec.rotate,
                             mode=spec.mode)
            self.listeners: list[Callable[[Image.Image], None]] = []
            self.frame: Image.Image | None = None
            self.png_path = Path(spec.sim_png) if spec.sim_png else None
            if self.png_path:
                self.png_path.parent.mkdir(parents=True, exist_ok=True)

        def release(self) -> None:
            """Save no more frames: the kiosk has closed its hardware. luma blanks every
            device again at interpreter exit (luma.core 2.6.0 ``device.__init__`` registers
            ``cleanup`` with ``atexit``), when the state folder may be gone: saving that
            blank frame made the folder again."""
            self.png_path = None

        def display(self, image: Image.Image) -> None:
            super().display(image)
            self.frame = image.copy()
            png = self.png_path  # once: release() may clear it from another thread
            if png:
                write_atomically(png, lambda file: image.save(file, format="PNG"),
                                 durable=False)  # a picture of the screen, not a record
            for listener in self.listeners:
                listener(self.frame)

    return PngDummy()


class CaptureBus:
    """A luma serial interface that keeps the bytes a panel would receive.

    luma.oled's own tests pass a recording ``Mock`` as ``serial_interface``
    (``tests/test_ssd1306.py``); this is the same seam with the bytes kept:
    luma's device classes call ``command(*bytes)``, ``data(list_of_bytes)`` and
    ``cleanup()`` (luma.core 2.6.0 ``interface/serial.py``, class ``i2c``).
    """

    def __init__(self) -> None:
        self.commands: list[tuple[int, ...]] = []
        self.frames: list[bytes] = []
        """Each ``data()`` call's bytes, in order."""
        self.closed = False

    def command(self, *cmd: int) -> None:
        """Record one command sequence."""
        self.commands.append(tuple(cmd))

    def data(self, data: list[int]) -> None:
        """Record one block of pixel data."""
        self.frames.append(bytes(data))

    def cleanup(self) -> None:
        """Remember that the bus was released."""
        self.closed = True

    def reset(self) -> None:
        """Forget everything recorded so far (e.g. the panel's start-up sequence)."""
        self.commands.clear()
        self.frames.clear()


def make_mock_pin_factory() -> Any:
    """gpiozero's own mock pins, which keep their state history for tests.

    PWM pins (``MockPWMPin``), as on a Pi with lgpio: the LEDs breathe and a
    TonalBuzzer needs PWM (gpiozero 2.0.1 ``pins/mock.py``: ``MockFactory(pin_class=...)``).
    """
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    return MockFactory(pin_class=MockPWMPin)


class LightsStateFile:
    """Writes the simulated lights' state to a small JSON file whenever it changes.

    For integrators who do not speak Python: ``{"pattern": "reward", "led":
    {"red": 1.0, "green": 0.6, "blue": 0.0}, "buzzer": "C6"}``, replaced
    atomically, checked ten times a second.
    """

    def __init__(self, lights: Lights, path: str) -> None:
        self._lights = lights
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._last = ""
        self._worker = Worker("kiosk-sim-lights", self._run)
        self._worker.start()

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.wait(0.1):
            self.write()

    def write(self) -> None:
        """Write the state now if it changed."""
        text = json.dumps(self._lights.state(), sort_keys=True)
        if text != self._last:
            write_atomically(self.path, lambda file: file.write(f"{text}\n".encode()),
                             durable=False)
            self._last = text

    def stop(self) -> None:
        """Stop watching; the file keeps the state at this moment."""
        self._worker.stop()
        self.write()


class SimKeyboard:
    """A keyboard-wedge scanner: key events written as the kernel writes them.

    The real reader (:class:`drivers.wedge.WedgeCodeSource`) reads it through
    evdev's own ``EventIO.read`` — ``_input.device_read_many`` on a file
    descriptor — exactly as it reads ``/dev/input/event*``. Here the descriptor
    is a pipe carrying ``struct input_event`` records, because this machine has
    no ``/dev/uinput`` to make a real input device (where it has one,
    ``evdev.UInput`` does and the tests use it too). ``grab`` is an ioctl a pipe
    cannot take, so it is only recorded.
    """

    name = "Simulated barcode scanner"
    EVENT = struct.Struct("@llHHi")  # struct input_event: timeval, type, code, value

    def __init__(self) -> None:
        try:
            from evdev import ecodes
        except ImportError as exc:
            raise DriverUnavailable(TESTING_EXTRA.format(what="python-evdev")) from exc

        self._ecodes = ecodes
        self.grabbed = False
        self._plugged = True
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK)

    def open(self, _device: str) -> SimKeyboard:
        """The opener the reader calls: this keyboard, while it is plugged in."""
        if not self._plugged:
            raise DriverError("no input device (simulated scanner unplugged)")
        return self

    def fileno(self) -> int:
        """The read end, for ``select``."""
        return self._read_fd

    def grab(self) -> None:
        """Note the grab (``EVIOCGRAB`` is an ioctl on event nodes only)."""
        self.grabbed = True

    def read(self) -> Any:
        """Waiting events, parsed by evdev's own ``EventIO.read``."""
        if not self._plugged:
            raise OSError(errno.ENODEV, "No such device")
        from evdev.eventio import EventIO

        reader = EventIO()
        reader.fd = self._read_fd  # type: ignore[attr-defined,unused-ignore]
        return reader.read()

    def close(self) -> None:
        """Release the grab (the pipe stays for the next open)."""
        self.grabbed = False

    def unplug(self) -> None:
        """Pull the USB plug: reads fail with ENODEV, opens fail, until :meth:`plug`.

        A removed event node wakes ``select`` (POLLHUP); so does a pipe whose writer closes.
        """
        self._plugged = False
        self.release()

    def plug(self) -> None:
        """Plug it back in (a new device node)."""
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK)
        self._plugged = True

    def type(self, text: str, enter: bool = True) -> None:
        """Type ``text`` (US layout) and Enter, as a scanner does after a read."""
        from drivers.wedge import US_LAYOUT

        keys = self._ecodes.ecodes
        by_char: dict[str, tuple[str, bool]] = {}
        for name, (plain, shifted) in US_LAYOUT.items():
            if not name.startswith("KEY_KP"):
                by_char.setdefault(plain, (name, False))
                by_char.setdefault(shifted, (name, True))
        events: list[tuple[int, int]] = []
        for char in text:
            name, shift = by_char[char]
            press = [(keys[name], 1), (keys[name], 0)]
            if shift:
                press = [(keys["KEY_LEFTSHIFT"], 1), *press, (keys["KEY_LEFTSHIFT"], 0)]
            events += press
        if enter:
            events += [(keys["KEY_ENTER"], 1), (keys["KEY_ENTER"], 0)]
        self.send_keys(events)

    def send_keys(self, keys: list[tuple[int, int]]) -> None:
        """Raw key events ``(key number, 1 down / 0 up)``, each followed by a SYN_REPORT."""
        now = time.time()
        sec, usec = int(now), int(now % 1 * 1e6)
        ev = self._ecodes
        data = b"".join(self.EVENT.pack(sec, usec, ev.EV_KEY, key, value)
                        + self.EVENT.pack(sec, usec, ev.EV_SYN, ev.SYN_REPORT, 0)
                        for key, value in keys)
        # Whole records in writes of at most PIPE_BUF bytes, which a pipe never splits:
        # the reader, like the kernel's, only ever sees whole records.
        chunk = select.PIPE_BUF // self.EVENT.size * self.EVENT.size
        for start in range(0, len(data), chunk):
            while True:
                try:
                    os.write(self._write_fd, data[start:start + chunk])
                    break
                except BlockingIOError:  # full: the reader drains it
                    time.sleep(0.01)

    def release(self) -> None:
        """Close both ends of the pipe."""
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class SimPn532:
    """A PN532 with a tag to tap, behind the calls the kiosk makes of Adafruit's driver.

    :meth:`tap` lays a tag on the reader: its UID and, for an NTAG, its memory
    (an NDEF text record from :func:`drivers.nfc.ndef_text_memory`, or raw bytes);
    a tag without memory answers page reads with None, as a MIFARE Classic does
    to ``ntag2xx_read_block`` without authentication.
    """

    def __init__(self) -> None:
        self._tag: tuple[bytes, bytes | None] | None = None
        self._present = threading.Event()
        self._plugged = True
        self.configured = False

    def open(self, _spec: object) -> SimPn532:
        """The opener the reader calls: this PN532, while it answers."""
        if not self._plugged:
            raise OSError(errno.EIO, "PN532 not answering (simulated)")
        return self

    def tap(self, uid: bytes, text: str | None = None, memory: bytes | None = None) -> None:
        """Lay a tag on the reader (until :meth:`take_away`)."""
        if text is not None:
            from drivers.nfc import ndef_text_memory

            memory = ndef_text_memory(text)
        self._tag = (uid, memory)
        self._present.set()

    def take_away(self) -> None:
        """Lift the tag off the reader."""
        self._present.clear()
        self._tag = None

    def unplug(self) -> None:
        """The HAT stops answering until :meth:`plug`."""
        self._plugged = False

    def plug(self) -> None:
        """The HAT answers again."""
        self._plugged = True

    def SAM_configuration(self) -> None:
        """Normal mode."""
        self.configured = True

    def read_passive_target(self, card_baud: int = 0, timeout: float = 1) -> bytes | None:
        """The UID of the tag on the reader, waiting up to ``timeout``."""
        if not self._plugged:
            raise RuntimeError("Failed to detect the PN532")  # what Adafruit's driver raises
        if not self._present.wait(timeout):
            return None
        tag = self._tag
        return tag[0] if tag else None

    def ntag2xx_read_block(self, block_number: int) -> bytes | None:
        """Four bytes of the tag's memory (page 4 is the first data page)."""
        tag = self._tag
        if tag is None or tag[1] is None:
            return None
        at = (block_number - 4) * 4
        if at >= len(tag[1]):  # past the end of the tag's memory: the read fails
            return None
        return tag[1][at:at + 4].ljust(4, b"\x00")
