"""Health reports: what staff need to see of a kiosk they cannot walk up to."""

from __future__ import annotations

import socket
import time
from pathlib import Path

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature(zone: Path = THERMAL_ZONE) -> float | None:
    """SoC temperature in °C (a Pi in a closed kiosk case throttles near 80 °C), or None."""
    try:
        return round(int(zone.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


class Rate:
    """Events per second between two readings of a running counter."""

    def __init__(self, count: int = 0) -> None:
        self._count = count
        self._at = time.monotonic()

    def update(self, count: int) -> float:
        """The rate since the last update; remembers ``count`` for the next one."""
        now = time.monotonic()
        elapsed = now - self._at
        rate = (count - self._count) / elapsed if elapsed > 0 else 0.0
        self._count, self._at = count, now
        return round(rate, 1)


def local_address(towards: str) -> str:
    """This kiosk's IP address on the way to ``towards`` (the broker), for the staff screen.

    A UDP socket is connected, which only picks a route: nothing is sent.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((towards, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return "no network"
