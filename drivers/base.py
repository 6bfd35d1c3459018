"""The contracts every backend keeps, and the small pieces they share.

A code source (camera, serial reader) is started with a callback and hands up
*codes, never frames*. The callback must only enqueue and return: it runs on
the source's own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from drivers.lights import Lights

log = logging.getLogger(__name__)

OnCode = Callable[[str, str, float], None]
"""``on_code(code, source_name, seen_at_unix_time)``; must not block."""


class CodeSource(Protocol):
    """Anything that reads member codes: a camera, a serial reader."""

    name: str

    def start(self, on_code: OnCode) -> None:
        """Begin reading on a thread of the source's own."""

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and release the device; logs if the thread will not stop."""


class FrameSink(Protocol):
    """Where rendered screens go: a luma device (``display(image)``, ``size``, ``mode``)."""

    size: tuple[int, int]
    mode: str

    def display(self, image: object) -> None:
        """Show one PIL image of exactly ``size``."""


class Cooldown:
    """Drops a code already handed up less than ``seconds`` ago.

    A card held in front of the camera is decoded in every frame and a reader
    may repeat a scan; the customer still checks in once. Different codes are
    never held back, so two customers in quick succession both check in.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: dict[str, float] = {}

    def accept(self, code: str) -> bool:
        """True when ``code`` should be handed up now."""
        now = self._clock()
        if len(self._last) > 64:  # bounded: forget codes whose cooldown has passed
            self._last = {c: t for c, t in self._last.items() if now - t < self._seconds}
        last = self._last.get(code)
        if last is not None and now - last < self._seconds:
            return False
        self._last[code] = now
        return True


class Worker:
    """A named thread with a stop event, like gpiozero's ``GPIOThread``.

    ``stop()`` joins with a timeout and complains loudly if the thread will not
    end, instead of hanging shutdown.
    """

    def __init__(self, name: str, target: Callable[[threading.Event], None]) -> None:
        self.stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(target,), name=name, daemon=True
        )

    def _run(self, target: Callable[[threading.Event], None]) -> None:
        try:
            target(self.stopping)
        except Exception:
            log.exception("thread %s died", self._thread.name)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to stop and wait; False (and an error log) if it did not."""
        self.stopping.set()
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("thread %s did not stop within %.1f s", self._thread.name, timeout)
            return False
        return True


@dataclass
class Hardware:
    """Everything the application drives, built by ``drivers.factory.make_hardware``."""

    sources: list[CodeSource]
    display: FrameSink | None
    lights: Lights | None
    closers: list[Callable[[], None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Devices that are configured but could not be opened, each with the reason."""

    def close(self) -> None:
        """Release every device (pins, ptys, files) in reverse order of creation."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("closing hardware failed")
