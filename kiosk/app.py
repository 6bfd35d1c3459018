"""Wiring: builds the kiosk from its config, owns its threads, starts and stops them in order.

The thread that calls :meth:`App.run` is the controller thread: the only one
that touches the controller, the database, the display and the lights.
Everything else (code sources, paho, the display worker) only puts events on
``App.events``.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from drivers.base import Hardware
from drivers.display import DisplayWorker
from drivers.factory import SimHandles, make_hardware
from kiosk import __version__, protocol, systemd
from kiosk.cache import MemberCache
from kiosk.config import Config
from kiosk.controller import RECENT_CHECKINS, Controller, Timing
from kiosk.db import open_db
from kiosk.events import (
    Acked,
    Action,
    CodeRead,
    DeviceProblem,
    Event,
    LinkUp,
    Record,
    RecordFailed,
    Remember,
    Show,
    Signal,
    StaffMessage,
    Tick,
)
from kiosk.identity import default_device_id
from kiosk.link import Link, LinkError
from kiosk.members import MemberCodes
from kiosk.outbox import Outbox, OutboxError
from kiosk.provisioning import overlay
from kiosk.provisioning.desk import StaffDesk
from kiosk.provisioning.shadow import Shadow
from kiosk.publisher import Publisher
from kiosk.screens import Screen, render
from kiosk.telemetry import Rate, cpu_temperature
from kiosk.watchdog import Watchdog

log = logging.getLogger(__name__)

TICK_S = 0.2
QUEUE_SIZE = 1000
STAFF_SHARE = 50
"""Staff messages waiting at most on the event queue: a flood of them cannot crowd out
codes, replies or PUBACKs (the rest are dropped and counted)."""


class App:
    """One kiosk: hardware, controller, outbox, cache and MQTT link."""

    def __init__(self, config: Config, hardware: tuple[Hardware, SimHandles] | None = None):
        base = config
        start = overlay.startup(base)  # the local file, with staff's config over it
        self.config = config = start.config
        self.device_id = config.kiosk.device_id or default_device_id()
        self.boot_id = uuid.uuid4().hex[:12]
        self.events: queue.Queue[Event] = queue.Queue(QUEUE_SIZE)
        self.events_dropped = 0
        self._staff_slots = threading.Semaphore(STAFF_SHARE)
        self.restart_requested: str | None = None
        self.scans = 0
        self.checkins_recorded = 0
        self._started_at = time.monotonic()
        self._decode_rate = Rate()
        self.screen: Screen | None = None
        self._ready = threading.Event()

        self._db, self.db_moved_to = open_db(Path(config.kiosk.state_dir) / "kiosk.db")
        self.outbox = Outbox(self._db, config.outbox.max_rows)
        self.cache = MemberCache(self._db)
        self._known = self.cache.load()  # shared with the controller; flush-cache empties it
        self.controller = Controller(
            MemberCodes(config.members.pattern),
            Timing(config.counter.reply_timeout_s, config.counter.result_screen_s),
            self.device_id, self.boot_id, self._known,
        )
        self._expect_stored_replies()
        self.topics = protocol.Topics(config.mqtt.topic_prefix, config.kiosk.site, self.device_id)
        self.link = Link(config.mqtt, self.topics, self.device_id, self._emit)
        self.publisher = Publisher(self.outbox, self.link, config.outbox.publish_window)
        shadow = Shadow(base, start, self.topics, self._publish_staff, self.request_restart)
        self.staff = StaffDesk(self, config, self._db, self.topics, self._publish_staff, shadow)
        self.hardware, self.sim = hardware or make_hardware(config.hardware)
        self.display = DisplayWorker(self.hardware.display) if self.hardware.display else None
        self.problems = list(self.hardware.problems)
        """What is not as configured, reported as the ``degraded`` state until a restart."""
        if self.db_moved_to:
            self.problems.append(f"database was corrupt, moved to {self.db_moved_to}")

    def _expect_stored_replies(self) -> None:
        """Check-ins stored before a restart are sent now: their replies are ours too."""
        for _row_id, payload in self.outbox.after(0, RECENT_CHECKINS):
            try:
                checkin, _replayed = protocol.decode_checkin(payload)
            except protocol.ProtocolError:  # stored by another version; it is still sent
                continue
            self.controller.expect_reply(checkin.event_id, checkin.member_id)

    # --- producers (any thread) -------------------------------------------

    def _emit(self, event: Event) -> None:
        if isinstance(event, StaffMessage) and not self._staff_slots.acquire(blocking=False):
            self.events_dropped += 1
            log.error("too many staff messages waiting; dropped one on %s", event.topic)
            return
        try:
            self.events.put_nowait(event)
        except queue.Full:
            if isinstance(event, StaffMessage):
                self._staff_slots.release()
            self.events_dropped += 1
            log.error("event queue full; dropped %s", type(event).__name__)

    def _on_code(self, code: str, source: str, seen_at: float) -> None:
        self._emit(CodeRead(code, source, seen_at))

    def _on_problem(self, device: str, reason: str) -> None:
        self._emit(DeviceProblem(device, reason))

    # --- the controller thread --------------------------------------------

    def wait_ready(self, timeout: float) -> bool:
        """Block until :meth:`run` has started every part (for tests and the demo)."""
        return self._ready.wait(timeout)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then shut down in order. Call from one thread only."""
        self._start()
        watchdog = Watchdog(systemd.watchdog_interval(), {"MQTT network thread": self.link.alive})
        health_every = self.config.telemetry.interval_s
        next_tick = next_health = time.monotonic()
        try:
            while not stop.is_set() and self.restart_requested is None:
                try:
                    event: Event | None = self.events.get(timeout=TICK_S)
                except queue.Empty:
                    event = None
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_S
                    self._dispatch_safely(Tick())
                if event is not None:
                    self._dispatch_safely(event)
                watchdog.feed(now)  # from this loop: a stuck controller stops the pings
                if health_every and now >= next_health and self.link.connected:
                    next_health = now + health_every
                    try:
                        self._report_health()
                    except Exception:  # a report is not worth stopping the counter for
                        log.exception("health report failed")
        finally:
            self._shutdown()

    def _start(self) -> None:
        if self.display:
            self.display.start()
        self._carry_out(self.controller.start(), time.monotonic())
        for source in list(self.hardware.sources):
            try:
                source.start(self._on_code, self._on_problem)
            except Exception as exc:  # e.g. no camera on the ribbon cable
                log.error("%s unavailable: %s", source.name, exc)
                self.problems.append(f"{source.name}: {exc}")
                self.hardware.sources.remove(source)
        if self.problems:
            self.link.set_state("degraded", "; ".join(self.problems))
        self.link.start()
        if self.outbox.depth:
            log.info("%d check-ins waiting in the outbox from before", self.outbox.depth)
        systemd.notify(f"READY=1\nSTATUS=device {self.device_id}, version {__version__}")
        self._ready.set()

    def _dispatch_safely(self, event: Event) -> None:
        # A bug triggered by one event must not stop the counter for the next customer.
        try:
            self._dispatch(event)
        except Exception:
            log.exception("failed to handle %s", type(event).__name__)

    def health(self) -> protocol.Health:
        """How this kiosk is doing, as staff see it on ``tele/health``."""
        frames = sum(getattr(source, "frames_decoded", 0) for source in self.hardware.sources)
        fault = self.display.fault if self.display else None  # a panel failing right now
        problems = [*self.problems, fault] if fault else self.problems
        return protocol.Health(
            uptime_s=round(time.monotonic() - self._started_at, 1),
            state="degraded" if problems else "ready", problems=problems,
            outbox_depth=self.outbox.depth, outbox_oldest_s=round(self.outbox.oldest_age(), 1),
            scans=self.scans, checkins=self.checkins_recorded,
            delivered=self.publisher.delivered, refused=self.publisher.refused,
            decode_fps=self._decode_rate.update(frames), connects=self.link.connects,
            bad_messages=self.link.bad_messages,
            replies_refused=self.controller.replies_refused, events_dropped=self.events_dropped,
            cpu_temp_c=cpu_temperature(),
        )

    def _report_health(self) -> None:
        self.link.publish(self.topics.health, protocol.encode_health(self.health()), qos=0)

    def _dispatch(self, event: Event) -> None:
        now = time.monotonic()
        if isinstance(event, StaffMessage):
            self._staff_slots.release()
            self.staff.handle(event)  # checked and carried out by kiosk.provisioning
            return
        if isinstance(event, DeviceProblem):  # a device failed or recovered while running
            self.problems = [p for p in self.problems if not p.startswith(f"{event.device}: ")]
            if event.reason:
                self.problems.append(f"{event.device}: {event.reason}")
            self.link.set_state("degraded" if self.problems else "ready", "; ".join(self.problems))
            return
        if isinstance(event, CodeRead):
            self.scans += 1
        self._carry_out(self.controller.handle(event, now), now)
        match event:
            case Acked(mid=mid, ok=ok, reason=reason):
                self.publisher.acked(mid, ok, reason)
            case LinkUp():
                self.staff.link_up()
                self.publisher.pump()
            case Tick():
                self.staff.tick(now)
                self.publisher.pump()

    def _carry_out(self, actions: list[Action], now: float) -> None:
        for action in actions:
            match action:
                case Record(checkin=checkin):
                    try:
                        row_id = self.outbox.add(checkin.event_id, protocol.encode_checkin(checkin))
                    except OutboxError as exc:
                        # Nothing after the Record may run: it would tell the customer
                        # "checked in". Show why instead.
                        self._carry_out(self.controller.handle(
                            RecordFailed(checkin, str(exc)), now), now)
                        return
                    self.checkins_recorded += 1
                    self.publisher.stored(row_id, online=self.controller.online)
                case Show(screen=screen):
                    self.screen = screen
                    if self.display:
                        self.display.show(render(screen, self.display.size))
                case Signal(pattern=pattern):
                    if self.hardware.lights is not None:
                        self.hardware.lights.show(pattern)
                case Remember(member_id=member_id, status=status):
                    try:
                        self.cache.put(member_id, status)
                    except sqlite3.Error as exc:  # a cache miss later is harmless
                        log.warning("member cache not updated: %s", exc)
                case _:
                    raise TypeError(f"unknown action {action!r}")

    # --- what staff commands use (kiosk.provisioning.commands.Parts) ---------

    def _publish_staff(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            self.link.publish(topic, payload, qos=1, retain=retain)
        except LinkError as exc:
            log.warning("staff answer not sent: %s", exc)

    def signal(self, pattern: str) -> bool:
        """Run a light pattern; False when no lights are fitted."""
        if self.hardware.lights is None:
            return False
        self.hardware.lights.show(pattern)
        return True

    def display_size(self) -> tuple[int, int] | None:
        """The display's size, or None when there is none."""
        return self.display.size if self.display else None

    def show_frame(self, image: Image.Image | None) -> None:
        """Show ``image`` (None: the customer's screen again)."""
        if self.display:
            if image is None and self.screen is not None:
                image = render(self.screen, self.display.size)
            if image is not None:
                self.display.show(image)

    def set_contrast(self, level: int) -> bool:
        """The display's brightness, 0-255; False when there is no display."""
        if not self.display:
            return False
        self.display.set_contrast(level)
        return True

    def flush_member_cache(self) -> int:
        """Forget every cached member status (what the kiosk shows when offline)."""
        self._known.clear()
        return self.cache.clear()

    def request_restart(self, reason: str) -> None:
        """Leave :meth:`run` after this event; :func:`serve` starts the kiosk again."""
        log.info("restarting: %s", reason)
        self.restart_requested = reason

    def _shutdown(self) -> None:
        log.info("stopping")
        systemd.notify("STOPPING=1")
        for source in self.hardware.sources:
            source.stop()
        while True:  # codes read before the sources stopped are still check-ins
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self._dispatch_safely(event)
        self.link.stop()
        if self.display:
            self.display.stop()
        self.hardware.close()
        self._db.close()
        log.info("stopped: %d check-ins recorded, %d delivered, %d refused by the broker, "
                 "%d waiting in the outbox; %d connects, %d malformed messages, "
                 "%d events dropped", self.checkins_recorded, self.publisher.delivered,
                 self.publisher.refused, self.outbox.depth, self.link.connects,
                 self.link.bad_messages, self.events_dropped)


def serve(config: Config, stop: threading.Event,
          started: Callable[[App], None] = lambda _app: None) -> None:
    """Run kiosks built from ``config`` until ``stop``: a restart (a command, or staff's
    new config) stops the parts in order and builds them again from the files."""
    while not stop.is_set():
        app = App(config)
        started(app)
        app.run(stop)
        if app.restart_requested is None:
            return
