"""systemd's watchdog, fed only while the kiosk can still serve a customer.

The pings are sent from the controller loop itself, so a controller stuck in a
call (a locked database, a hung driver) stops them; and they are withheld while
any other vital thread (paho's network thread) is dead. systemd then kills the
kiosk after ``WatchdogSec`` (SIGABRT: ``faulthandler`` prints every thread's
stack to the journal first) and restarts it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kiosk.ops import systemd

log = logging.getLogger(__name__)


class Watchdog:
    """Call :meth:`feed` from the controller loop on every turn."""

    def __init__(self, interval: float | None, vital: dict[str, Callable[[], bool]]) -> None:
        self.interval = interval
        """Seconds between pings (half of ``WatchdogSec``), or None when systemd set none."""
        self._vital = vital
        self._next = 0.0
        self._withheld: list[str] = []
        self.pings = 0

    def feed(self, now: float) -> None:
        """Ping when one is due and every vital thread lives; say once why when withheld."""
        if self.interval is None or now < self._next:
            return
        dead = [name for name, alive in self._vital.items() if not alive()]
        if dead:
            if dead != self._withheld:
                log.error("not feeding the systemd watchdog: %s stopped; systemd restarts "
                          "the kiosk when WatchdogSec runs out", ", ".join(dead))
            self._withheld = dead
            return
        if self._withheld:
            log.info("feeding the systemd watchdog again")
            self._withheld = []
        self._next = now + self.interval
        self.pings += 1
        systemd.notify("WATCHDOG=1")
