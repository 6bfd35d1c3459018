"""Recorders and broken buses shared by the device tests (unit) and the running kiosk's
(system): what a code source hands up, and an I2C bus whose panel can be pulled out.
"""

from __future__ import annotations

import errno
import threading

from drivers.sim import CaptureBus


class UnpluggedBus(CaptureBus):
    """A bus whose panel can be pulled out: every write fails like I2C without a device."""

    def __init__(self) -> None:
        super().__init__()
        self.unplugged = True
        self.opened = 0

    def command(self, *cmd: int) -> None:
        if self.unplugged:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        super().command(*cmd)

    def data(self, data: list[int]) -> None:
        if self.unplugged:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        super().data(data)


class Seen:
    """Codes and problem reports a source hands up, thread-safely."""

    def __init__(self) -> None:
        self.codes: list[tuple[str, str]] = []
        self.problems: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def code(self, code: str, source: str, _at: float) -> None:
        with self._lock:
            self.codes.append((code, source))

    def problem(self, source: str, reason: str) -> None:
        with self._lock:
            self.problems.append((source, reason))
