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
from pathlib import Path

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
    Tick,
)
from kiosk.identity import default_device_id
from kiosk.link import Link
from kiosk.members import MemberCodes
from kiosk.outbox import Outbox, OutboxError
from kiosk.publisher import Publisher
from kiosk.screens import Screen, render
from kiosk.telemetry import Rate, cpu_temperature
from kiosk.watchdog import Watchdog

log = logging.getLogger(__name__)

TICK_S = 0.2
QUEUE_SIZE = 1000


class App:
    """One kiosk: hardware, controller, outbox, cache and MQTT link."""

    def __init__(self, config: Config, hardware: tuple[Hardware, SimHandles] | None = None):
        self.config = config
        self.device_id = config.kiosk.device_id or default_device_id()
        self.boot_id = uuid.uuid4().hex[:12]
        self.events: queue.Queue[Event] = queue.Queue(QUEUE_SIZE)
        self.events_dropped = 0
        self.scans = 0
        self.checkins_recorded = 0
        self._started_at = time.monotonic()
        self._decode_rate = Rate()
        self.screen: Screen | None = None
        self._ready = threading.Event()

        self._db, self.db_moved_to = open_db(Path(config.kiosk.state_dir) / "kiosk.db")
        self.outbox = Outbox(self._db, config.outbox.max_rows)
        self.cache = MemberCache(self._db)
        self.controller = Controller(
            MemberCodes(config.members.pattern, config.members.card_issuers,
                        config.members.tag_ids),
            Timing(config.counter.reply_timeout_s, config.counter.result_screen_s),
            self.device_id, self.boot_id, self.cache.load(),
        )
        self._expect_stored_replies()
        self.topics = protocol.Topics(config.mqtt.topic_prefix, config.kiosk.site, self.device_id)
        self.link = Link(config.mqtt, self.topics, self.device_id, self._emit)
        self.publisher = Publisher(self.outbox, self.link, config.outbox.publish_window)
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
        try:
            self.events.put_nowait(event)
        except queue.Full:
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
            while not stop.is_set():
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

    def _report_health(self) -> None:
        frames = sum(getattr(source, "frames_decoded", 0) for source in self.hardware.sources)
        fault = self.display.fault if self.display else None  # a panel failing right now
        problems = [*self.problems, fault] if fault else self.problems
        health = protocol.Health(
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
        self.link.publish(self.topics.health, protocol.encode_health(health), qos=0)

    def _dispatch(self, event: Event) -> None:
        now = time.monotonic()
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
            case LinkUp() | Tick():
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
