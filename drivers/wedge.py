"""Keyboard-wedge readers: USB QR scanners and RFID tap readers that type the code and Enter.

Most USB scanners are keyboards out of the box. The kiosk reads them through
evdev and **grabs** the device (``EVIOCGRAB``), so the keystrokes reach only the
kiosk — never a login prompt on the console. Key codes become characters with
the US layout (:data:`US_LAYOUT`, shifted characters included); Enter (or the
keypad's Enter) ends a code. Set the scanner to the US keyboard layout.

Checked against gvalkov/python-evdev (commit 8188abb, src/evdev/device.py,
eventio.py, input.c; evdev 2.0.0): ``InputDevice(path)`` opens the node
non-blocking; ``grab()`` is ``ioctl(EVIOCGRAB, 1)``; ``read()`` calls
``_input.device_read_many(fd)``, which ``read(2)``s whole ``struct input_event``
records and raises ``BlockingIOError`` when none are waiting (an unplugged
device raises ``OSError`` ENODEV); ``list_devices()`` lists ``/dev/input/event*``.

A device is found by path (``/dev/input/by-id/usb-...-event-kbd``, which survives
re-plugging) or by a part of its name (``InputDevice.name``).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any, Protocol

from drivers import DriverError, DriverUnavailable
from drivers.base import Debounce, OnCode, OnProblem, Worker, keep_open, no_problem_report
from drivers.framing import MAX_CODE
from drivers.specs import WedgeSpec

log = logging.getLogger(__name__)

EV_KEY = 0x01
KEY_UP, KEY_DOWN = 0, 1  # 2 is autorepeat, which a scanner never sends for a code

US_LAYOUT: dict[str, tuple[str, str]] = {
    **{f"KEY_{c}": (c.lower(), c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{f"KEY_{d}": (d, s) for d, s in zip("1234567890", "!@#$%^&*()", strict=True)},
    "KEY_MINUS": ("-", "_"), "KEY_EQUAL": ("=", "+"), "KEY_LEFTBRACE": ("[", "{"),
    "KEY_RIGHTBRACE": ("]", "}"), "KEY_BACKSLASH": ("\\", "|"), "KEY_SEMICOLON": (";", ":"),
    "KEY_APOSTROPHE": ("'", '"'), "KEY_GRAVE": ("`", "~"), "KEY_COMMA": (",", "<"),
    "KEY_DOT": (".", ">"), "KEY_SLASH": ("/", "?"), "KEY_SPACE": (" ", " "),
    **{f"KEY_KP{d}": (d, d) for d in "0123456789"},
    "KEY_KPMINUS": ("-", "-"), "KEY_KPPLUS": ("+", "+"), "KEY_KPDOT": (".", "."),
    "KEY_KPSLASH": ("/", "/"), "KEY_KPASTERISK": ("*", "*"),
}
"""Key name -> (character, character with Shift): the US keyboard layout."""
SHIFT_KEYS = ("KEY_LEFTSHIFT", "KEY_RIGHTSHIFT")
ENTER_KEYS = ("KEY_ENTER", "KEY_KPENTER")


class KeyDecoder:
    """Turns key events into codes: pure, and fed the same numbers the kernel sends.

    ``codes`` maps key names to the kernel's key numbers (``evdev.ecodes.ecodes``).
    A key the layout does not know (Ctrl, F1, Tab...) spoils the code being
    typed: it is dropped at Enter and counted, rather than handed up with a hole.
    """

    def __init__(self, codes: dict[str, int], max_len: int = MAX_CODE) -> None:
        self._chars = {codes[name]: pair for name, pair in US_LAYOUT.items() if name in codes}
        self._shift = {codes[name] for name in SHIFT_KEYS}
        self._enter = {codes[name] for name in ENTER_KEYS}
        self._max_len = max_len
        self._typed: list[str] = []
        self._spoiled = False
        self._shifted: set[int] = set()
        self.discarded = 0
        """Codes thrown away (unknown keys, too long)."""

    def feed(self, kind: int, key: int, value: int) -> str | None:
        """One input event; the code when it ends with Enter, else None."""
        if kind != EV_KEY:
            return None  # EV_SYN, EV_MSC scan codes, LEDs
        if key in self._shift:
            if value == KEY_DOWN:
                self._shifted.add(key)
            elif value == KEY_UP:
                self._shifted.discard(key)
            return None
        if value != KEY_DOWN:
            return None
        if key in self._enter:
            code, spoiled = "".join(self._typed), self._spoiled
            self._typed.clear()
            self._spoiled = False
            if spoiled:
                self.discarded += 1
                return None
            return code or None
        pair = self._chars.get(key)
        if pair is None or len(self._typed) >= self._max_len:
            self._spoiled = True
            return None
        self._typed.append(pair[1] if self._shifted else pair[0])
        return None


class KeyDevice(Protocol):
    """What the reader needs of ``evdev.InputDevice`` (and the simulated keyboard provides)."""

    name: str

    def fileno(self) -> int:
        """The event node's file descriptor, for ``select``."""

    def grab(self) -> None:
        """Take the device for this process alone."""

    def read(self) -> Any:
        """Every waiting event (``.type``, ``.code``, ``.value``); BlockingIOError if none."""

    def close(self) -> None:
        """Release the device."""


def open_evdev(device: str) -> KeyDevice:
    """The input device at path ``device``, or the first one whose name contains it."""
    try:
        import evdev
    except ImportError as exc:
        raise DriverUnavailable("python-evdev is not installed: pip install evdev "
                                "(or apt install python3-evdev)") from exc
    if device.startswith("/"):
        found: KeyDevice = evdev.InputDevice(device)
        return found
    for path in evdev.list_devices():
        candidate = evdev.InputDevice(path)
        if device.lower() in candidate.name.lower():
            return candidate
        candidate.close()
    raise DriverError(f"no input device named like {device!r}")


def evdev_key_codes() -> dict[str, int]:
    """Key names -> numbers from evdev's ``ecodes`` (the kernel's input-event-codes.h)."""
    from evdev import ecodes

    return {name: ecodes.ecodes[name]
            for name in (*US_LAYOUT, *SHIFT_KEYS, *ENTER_KEYS) if name in ecodes.ecodes}


class WedgeCodeSource:
    """A :class:`~drivers.base.CodeSource` reading codes typed by a keyboard-wedge reader."""

    frames_decoded = 0  # no camera frames: a reader of codes, see CodeSource

    def __init__(self, spec: WedgeSpec, opener: Any = open_evdev,
                 name: str = "keyboard") -> None:
        self.name = name
        self._spec = spec
        self._opener = opener
        self._debounce = Debounce(spec.cooldown_s)
        self._worker: Worker | None = None
        self.discarded = 0

    def start(self, on_code: OnCode, on_problem: OnProblem = no_problem_report) -> None:
        """Start the reader thread; the device is found, opened and grabbed there."""
        codes = evdev_key_codes()
        self._worker = Worker(f"kiosk-{self.name}", lambda stop: keep_open(
            self.name, stop, on_problem, self._open,
            lambda device: self._read(device, KeyDecoder(codes), stop, on_code), _close))
        self._worker.start()

    def _open(self) -> KeyDevice:
        device = self._opener(self._spec.device)
        try:
            device.grab()  # keystrokes go to the kiosk only, never to a console
        except OSError:
            device.close()
            raise
        log.info("%s: reading %s (grabbed)", self.name, device.name)
        return device

    def _read(self, device: KeyDevice, keys: KeyDecoder, stopping: threading.Event,
              on_code: OnCode) -> None:
        counted = 0
        while not stopping.is_set():
            ready, _, _ = select.select([device], [], [], 0.2)
            if not ready:
                continue
            try:
                events = list(device.read())
            except BlockingIOError:
                continue
            for event in events:
                code = keys.feed(event.type, event.code, event.value)
                if code is not None and self._debounce.accept(code):
                    on_code(code, self.name, time.time())
            if keys.discarded > counted:
                self.discarded += keys.discarded - counted
                counted = keys.discarded
                log.warning("%s: discarded a code typed with keys outside the US layout "
                            "or too long (%d so far)", self.name, self.discarded)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the reader thread (which releases the device)."""
        if self._worker is not None:
            self._worker.stop(timeout)


def _close(device: KeyDevice) -> None:
    device.close()  # closing the node also ends the grab
