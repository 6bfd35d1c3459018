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
from typing import TYPE_CHECKING, Protocol, TypeVar

from drivers import DriverUnavailable
from drivers.backoff import Backoff

if TYPE_CHECKING:
    from drivers.lights import Lights

log = logging.getLogger(__name__)

OnCode = Callable[[str, str, float], None]
"""``on_code(code, source_name, seen_at_unix_time)``; must not block."""

OnProblem = Callable[[str, str], None]
"""``on_problem(source_name, reason)`` when a device fails, ``reason == ""`` when it works
again; must not block."""


def no_problem_report(_source: str, _reason: str) -> None:
    """The default ``on_problem``: the source's log lines are the report."""


class CodeSource(Protocol):
    """Anything that reads member codes: a camera, a serial reader."""

    name: str
    frames_decoded: int
    """Camera frames put through a decoder so far (always 0 for readers without frames)."""

    def start(self, on_code: OnCode, on_problem: OnProblem = no_problem_report) -> None:
        """Begin reading on a thread of the source's own; report device trouble to
        ``on_problem`` (once when it starts, once when it clears)."""

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and release the device; logs if the thread will not stop."""


class FrameSink(Protocol):
    """Where rendered screens go: a luma device (``display(image)``, ``size``, ``mode``)."""

    size: tuple[int, int]
    mode: str

    def display(self, image: object) -> None:
        """Show one PIL image of exactly ``size``."""


class Debounce:
    """Flood control for one source: a code is handed up once per appearance.

    A card held in front of the camera is decoded in every frame, and a serial
    reader repeats a tag while it lies on the antenna. A code goes up again only
    when it has been *out of view* for ``absent_s`` (no read at all) **and**
    ``cooldown_s`` have passed since it last went up: a card held for ten
    seconds goes up once. Different codes never hold each other back, so two
    customers in quick succession both go up. The business rule (one check-in
    per member per cooldown, across restarts) is the controller's, not this.
    """

    def __init__(self, cooldown_s: float, absent_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, remember: int = 64) -> None:
        self._cooldown_s = cooldown_s
        self._absent_s = absent_s
        self._clock = clock
        self._remember = remember
        self._seen: dict[str, tuple[float, float]] = {}  # code -> (last seen, last handed up)

    def accept(self, code: str) -> bool:
        """Note that ``code`` was read now; True when it should be handed up."""
        now = self._clock()
        if len(self._seen) > self._remember:  # bounded: forget codes that are gone
            horizon = max(self._cooldown_s, self._absent_s)
            self._seen = {c: (seen, up) for c, (seen, up) in self._seen.items()
                          if now - seen < horizon or now - up < horizon}
        last = self._seen.get(code)
        if last is None or (now - last[0] >= self._absent_s and now - last[1] >= self._cooldown_s):
            self._seen[code] = (now, now)
            return True
        self._seen[code] = (now, last[1])
        return False


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

    def cpu_seconds(self) -> float:
        """CPU time this thread has used so far (0 before it starts or after it ends)."""
        if self._thread.ident is None or not self._thread.is_alive():
            return 0.0
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))
        except OSError:  # ended between the check and the call
            return 0.0

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


Device = TypeVar("Device")


def keep_open(name: str, stopping: threading.Event, on_problem: OnProblem,
              open_device: Callable[[], Device], use: Callable[[Device], None],
              close: Callable[[Device], None], max_delay: float = 10.0) -> None:
    """Open a device, use it until it is lost, reopen it with a growing delay; until stopped.

    ``use`` returns when ``stopping`` is set and raises when the device goes away
    (unplugged, a camera pipeline error). Each trouble is logged and reported to
    ``on_problem`` once when it starts, and once when the device works again:
    a scanner that is not plugged in is one warning and a ``degraded`` reason,
    not a warning every few seconds forever. A missing library
    (:class:`~drivers.DriverUnavailable`) is reported and not retried.
    """
    backoff = Backoff(0.2, max_delay)
    reported = ""
    while not stopping.is_set():
        try:
            device = open_device()
        except DriverUnavailable as exc:
            log.error("%s: %s", name, exc)
            on_problem(name, str(exc))
            return
        except Exception as exc:  # each library has its own errors; all mean "not there"
            reason = f"cannot open: {exc}"
            if reason != reported:
                log.warning("%s: %s (retrying, up to every %.0f s)", name, reason, max_delay)
                on_problem(name, reason)
                reported = reason
            stopping.wait(backoff.next())
            continue
        if reported:
            log.warning("%s: working again", name)
            on_problem(name, "")
            reported = ""
        opened_at = time.monotonic()
        try:
            use(device)
        except Exception as exc:  # unplugged, or whatever else: the reader comes back
            reported = f"lost: {exc}"
            log.warning("%s: %s; reopening", name, reported)
            on_problem(name, reported)
            # A device that worked for a while is retried at once; one that fails
            # straight after opening backs off like one that cannot be opened.
            if time.monotonic() - opened_at > max_delay:
                backoff.reset()
            stopping.wait(backoff.next())
        finally:
            try:
                close(device)
            except Exception:
                log.exception("%s: closing failed", name)


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
