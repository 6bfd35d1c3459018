"""Line-oriented member-code reader on a serial port (USB/TTL scanners, NFC readers).

The reader owns its port on a thread of its own. When the device is unplugged
(or the port cannot be opened yet) it keeps retrying with a growing delay, so a
scanner plugged in later just starts working.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial

from drivers.base import Debounce, OnCode, OnProblem, Worker, keep_open, no_problem_report
from drivers.specs import SerialSpec

log = logging.getLogger(__name__)

MAX_LINE = 512
"""A line longer than this without a terminator is noise, not a member code."""


class SerialCodeSource:
    """A :class:`~drivers.base.CodeSource` reading one code per line from a serial port."""

    def __init__(self, spec: SerialSpec, port: str | None = None, name: str = "serial",
                 on_open: Callable[[], None] | None = None) -> None:
        self.name = name
        self.port = port or spec.port
        self._on_open = on_open
        self._baud = spec.baud
        self._terminator = spec.terminator.encode()
        self._debounce = Debounce(spec.cooldown_s)
        self._worker: Worker | None = None

    def start(self, on_code: OnCode, on_problem: OnProblem = no_problem_report) -> None:
        """Start the reader thread; the port is opened (and re-opened) there."""
        self._worker = Worker(f"kiosk-{self.name}",
                              lambda stop: self._run(stop, on_code, on_problem))
        self._worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the reader thread (which closes the port)."""
        if self._worker is not None:
            self._worker.stop(timeout)

    def _run(self, stopping: threading.Event, on_code: OnCode, on_problem: OnProblem) -> None:
        keep_open(self.name, stopping, on_problem, self._open,
                  lambda port: self._read_lines(port, stopping, on_code), _close)

    def _open(self) -> serial.SerialBase:
        port = serial.serial_for_url(self.port, baudrate=self._baud, timeout=0.2)
        if self._on_open is not None:
            self._on_open()
        return port

    def _read_lines(self, port: serial.SerialBase, stopping: threading.Event,
                    on_code: OnCode) -> None:
        pending = bytearray()
        while not stopping.is_set():
            chunk = port.read(port.in_waiting or 1)
            if not chunk:
                continue
            pending += chunk
            *lines, rest = bytes(pending).split(self._terminator)
            pending[:] = rest
            if len(pending) > MAX_LINE:
                log.warning("%s: dropped %d bytes with no line terminator",
                            self.name, len(pending))
                pending.clear()
            for raw in lines:
                code = printable(raw)
                if code and self._debounce.accept(code):
                    on_code(code, self.name, time.time())


def printable(raw: bytes) -> str:
    """The text of one line without control bytes or undecodable bytes.

    Scanners frame codes with STX/ETX or NUL and a reader plugged in mid-byte
    sends noise; none of it is part of a member code.
    """
    text = raw.decode("utf-8", errors="replace")
    return "".join(ch for ch in text if ch.isprintable() and ch != "\ufffd").strip()


def _close(port: serial.SerialBase) -> None:
    port.close()
