"""Member codes from a serial port: USB/TTL QR scanners (lines), 125 kHz RFID modules (STX/ETX).

The reader owns its port on a thread of its own. When the device is unplugged
(or the port cannot be opened yet) it keeps retrying with a growing delay and
reports the problem once, so a scanner plugged in later just starts working
and the ``degraded`` reason says what is missing meanwhile.

``port`` may be a glob such as ``/dev/serial/by-id/usb-*Scanner*``: udev's
by-id names survive re-plugging into another USB socket, where ``ttyACM0``
may become ``ttyACM1``.
"""

from __future__ import annotations

import glob
import logging
import threading
import time
from collections.abc import Callable

import serial

from drivers.base import Debounce, OnCode, OnProblem, Worker, keep_open, no_problem_report
from drivers.framing import Framer, make_framer
from drivers.specs import SerialSpec

log = logging.getLogger(__name__)


class SerialCodeSource:
    """A :class:`~drivers.base.CodeSource` reading one code per frame from a serial port."""

    frames_decoded = 0  # no camera frames: a reader of codes, see CodeSource

    def __init__(self, spec: SerialSpec, port: str | None = None, name: str = "serial",
                 on_open: Callable[[], None] | None = None) -> None:
        self.name = name
        self.port = port or spec.port
        self._on_open = on_open
        self._baud = spec.baud
        self._framing = spec.framing
        self._debounce = Debounce(spec.cooldown_s)
        self._worker: Worker | None = None
        self.discarded = 0
        """Bytes thrown away as noise (see :mod:`drivers.framing`); refused codes go up."""

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
                  lambda port: self._read(port, stopping, on_code), _close)

    def _open(self) -> serial.SerialBase:
        path = self.port
        if any(ch in path for ch in "*?["):
            matches = sorted(glob.glob(path))
            if not matches:
                raise serial.SerialException(f"no device matches {path}")
            path = matches[0]
        port = serial.serial_for_url(path, baudrate=self._baud, timeout=0.2)
        if self._on_open is not None:
            self._on_open()
        return port

    def _read(self, port: serial.SerialBase, stopping: threading.Event, on_code: OnCode) -> None:
        framer: Framer = make_framer(self._framing)
        while not stopping.is_set():
            chunk = port.read(port.in_waiting or 1)
            if not chunk:
                continue
            discarded = framer.discarded
            for frame in framer.feed(chunk):
                code = frame.decode("utf-8", errors="replace").strip()
                if code and self._debounce.accept(code):
                    on_code(code, self.name, time.time())
            if framer.discarded > discarded:
                self.discarded += framer.discarded - discarded
                log.warning("%s: discarded %d bytes of noise (past the cut of an over-long "
                            "line, outside a frame, or a bad tag checksum; %d so far)",
                            self.name, framer.discarded - discarded, self.discarded)


def _close(port: serial.SerialBase) -> None:
    port.close()
