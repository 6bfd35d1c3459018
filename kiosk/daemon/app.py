"""Wiring: builds the kiosk from its config, owns its threads, starts and stops them in order.

The thread that calls :meth:`App.run` is the controller thread: the only one
that touches the controller, the database, the display and the lights.
Everything else (code sources, paho, the display worker) only puts events on
``App.events``.
"""

from __future__ import annotations

import logging
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
from kiosk import __version__
from kiosk.config import Config
from kiosk.counter.checkin import CheckIn
from kiosk.counter.controller import RECENT_CHECKINS, Controller, Timing
from kiosk.counter.events import (
    Acked,
    Action,
    CodeRead,
    DeviceProblem,
    Event,
    LinkUp,
    Record,
    RecordFailed,
    Remember,
    ScansLost,
    Show,
    Signal,
    StaffMessage,
    Tick,
)
from kiosk.counter.members import MemberCodes
from kiosk.counter.screens import Fault, Idle, OutOfService, Screen, StaffInfo
from kiosk.daemon.inbox import Inbox
from kiosk.daemon.problems import Problems
from kiosk.daemon.telemetry import Rate, cpu_temperature, local_address
from kiosk.mqtt import protocol
from kiosk.mqtt.link import Link, LinkError
from kiosk.mqtt.publisher import Publisher
from kiosk.ops import systemd
from kiosk.ops.identity import default_device_id
from kiosk.ops.watchdog import Watchdog
from kiosk.provisioning import overlay
from kiosk.provisioning.desk import StaffDesk
from kiosk.provisioning.shadow import Shadow
from kiosk.store.cache import MemberCache
from kiosk.store.db import open_db
from kiosk.store.outbox import Outbox, OutboxError, OutboxFull
from kiosk.store.statedir import StateLock
from kiosk.ui.presenter import Presenter

log = logging.getLogger(__name__)

TICK_S = 0.2
FLUSH_AT = 64
"""Acknowledged rows deleted in one transaction at the latest (else on the next tick, or once
nothing is in flight)."""
FORGET_EVERY = 1000
"""Check-ins between two clean-ups of the remembered check-in times (cooldown)."""
IDENTIFY_S = 15.0
"""How long the staff screen stays up after an ``identify`` command."""
STORAGE_CHECK_S = 2.0
"""While storage is in trouble, how often to try whether it works again."""


class App:
    """One kiosk: hardware, controller, outbox, cache and MQTT link."""

    def __init__(self, config: Config, hardware: tuple[Hardware, SimHandles] | None = None):
        base = config
        start = overlay.startup(base)  # the local file, with staff's config over it
        self.config = config = start.config
        self.restart_requested: str | None = None
        self.device_id = config.kiosk.device_id or default_device_id()
        self.boot_id = uuid.uuid4().hex[:12]
        self.inbox = Inbox()
        self.scans_seen = 0
        self.checkins_recorded = 0
        self.visits_refused = 0
        self._scans_lost_told = 0
        self._started_at = time.monotonic()
        self._decode_rate = Rate()
        self.screen: Screen | None = None
        self._ready = threading.Event()

        state_dir = Path(config.kiosk.state_dir)
        self.lock = StateLock(state_dir)
        try:
            self._db, self.db_moved_to = open_db(state_dir / "kiosk.db")
        except BaseException:
            self.lock.release()
            raise
        self.outbox = Outbox(self._db, config.outbox.max_rows,
                             int(config.outbox.max_mb * 1_000_000))
        self.cache = MemberCache(self._db)
        self._known = self.cache.load()  # shared with the controller; flush-cache empties it
        counter = config.counter
        self.controller = Controller(
            MemberCodes(config.members.pattern, config.members.card_issuers,
                        config.members.tag_ids),
            Timing(counter.reply_timeout_s, counter.result_screen_s, counter.cooldown_s),
            self.device_id, self.boot_id, self._known,
            recent=self.outbox.recent_scans(time.time() - counter.cooldown_s),
        )
        self._expect_stored_replies()
        self.topics = protocol.Topics(config.mqtt.topic_prefix, config.kiosk.site, self.device_id)
        self.link = Link(config.mqtt, self.topics, self.device_id, self._emit,
                         window=config.outbox.publish_window)
        self.publisher = Publisher(self.outbox, self.link, config.outbox.publish_window)
        shadow = Shadow(base, start, self.topics, self._publish_staff, self.request_restart)
        self.staff = StaffDesk(self, config, self._db, self.topics, self._publish_staff, shadow)
        self.hardware, self.sim = hardware or make_hardware(config.hardware)
        self.display = DisplayWorker(self.hardware.display) if self.hardware.display else None
        self.presenter = Presenter(self.display, config.ui, config.display.kind,
                                   config.display.contrast, config.counter.result_screen_s)
        self._wanted: Screen | None = None  # what the controller last asked to show
        self._identify_until = 0.0
        self._identify_address = ""  # looked up once per identify, not on every tick
        self.problems = Problems(self._problems_changed)
        """What is wrong right now; the retained ``state`` is ``degraded`` while any is."""
        for problem in self.hardware.problems:
            self.problems.set(problem, problem)
        if self.db_moved_to:
            self.problems.set("database", f"database was corrupt, moved to {self.db_moved_to}")
        self._next_storage_check = 0.0

    @property
    def scans_not_taken(self) -> int:
        """Scans that arrived faster than they could be taken (shown and counted)."""
        return self.inbox.dropped_scans

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
        if not self.inbox.put(event):
            log.warning("inbox lane full; dropped %s", type(event).__name__)

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
                event = self.inbox.get(TICK_S)
                now = time.monotonic()
                ticked = now >= next_tick
                if ticked:
                    next_tick = now + TICK_S
                    self._dispatch_safely(Tick())
                    self.staff.tick(now)
                    self.link.supervise(now)
                    self._check_storage(now)
                    self._check_display()
                    self._present()  # the staff screen ends, out of service begins or ends
                if event is not None:
                    self._take(event)
                if self.inbox.dropped_scans > self._scans_lost_told:
                    lost = self.inbox.dropped_scans - self._scans_lost_told
                    self._scans_lost_told += lost
                    self._dispatch_safely(ScansLost(lost))
                self._deliver(ticked)
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
        self._carry_out([self.controller.start()], time.monotonic())
        for source in list(self.hardware.sources):
            try:
                source.start(self._on_code, self._on_problem)
            except Exception as exc:  # e.g. no camera on the ribbon cable
                log.error("%s unavailable: %s", source.name, exc)
                self.problems.set(source.name, f"{source.name}: {exc}")
                self.hardware.sources.remove(source)
        self.link.start()
        if self.outbox.depth:
            log.info("%d check-ins waiting in the outbox from before", self.outbox.depth)
        systemd.notify(f"READY=1\nSTATUS=device {self.device_id}, version {__version__}")
        self._ready.set()

    def _take(self, event: Event) -> None:
        """Handle ``event``, with those of its kind waiting behind it where that saves work."""
        if isinstance(event, CodeRead):  # a rush is committed in one transaction
            self._dispatch_safely(event, *self.inbox.pending_scans())
        elif isinstance(event, Acked):  # only the publisher cares: a drain's PUBACKs at once
            for ack in (event, *self.inbox.pending_acks()):
                self.publisher.acked(ack.mid, ack.ok, ack.reason)
        else:
            self._dispatch_safely(event)

    def _dispatch_safely(self, *events: Event) -> None:
        # A bug triggered by one event must not stop the counter for the next customer.
        try:
            self._dispatch(events)
        except Exception:
            log.exception("failed to handle %s", type(events[0]).__name__)

    def _deliver(self, ticked: bool) -> None:
        """Delete acknowledged rows in batches (a full batch, a tick, or when nothing else is
        in flight) and refill the publish window when the inbox has nothing more for now."""
        pending = self.publisher.pending_deletes
        if pending and (pending >= FLUSH_AT or ticked or not self.publisher.in_flight):
            self._flush()
        elif not len(self.inbox):
            self.publisher.pump()

    def _flush(self) -> None:
        """Delete acknowledged rows and refill the publish window."""
        try:
            self.publisher.flush()
        except OutboxError as exc:
            log.error("acknowledged check-ins not deleted yet (will retry): %s", exc)
            self.problems.set("storage", f"storage: {exc}")
            self._next_storage_check = time.monotonic() + STORAGE_CHECK_S

    def _check_display(self) -> None:
        """A panel failing right now (the display worker keeps reopening it) is a problem."""
        fault = self.display.fault if self.display else None
        if fault:
            self.problems.set("display", fault)
        else:
            self.problems.clear("display")

    def _check_storage(self, now: float) -> None:
        """While storage is in trouble, now and then try whether it works again."""
        if "storage" not in self.problems or now < self._next_storage_check:
            return
        self._next_storage_check = now + STORAGE_CHECK_S
        if self.outbox.full:
            return  # clears when delivered rows make room
        try:
            self.outbox.probe()
            self.publisher.flush()
        except OutboxError as exc:
            self.problems.set("storage", f"storage: {exc}")
            return
        log.info("storage works again")
        self.problems.clear("storage")

    def health(self) -> protocol.Health:
        """How this kiosk is doing, as staff see it on ``tele/health``."""
        frames = sum(getattr(source, "frames_decoded", 0) for source in self.hardware.sources)
        return protocol.Health(
            uptime_s=round(time.monotonic() - self._started_at, 1),
            state=self.problems.state, problems=self.problems.texts(),
            outbox_depth=self.outbox.depth, outbox_oldest_s=round(self.outbox.oldest_age(), 1),
            scans=self.scans_seen, checkins=self.checkins_recorded,
            visits_refused=self.visits_refused, scans_lost=self.inbox.dropped_scans,
            delivered=self.publisher.delivered, refused=self.publisher.refused,
            decode_fps=self._decode_rate.update(frames), connects=self.link.connects,
            bad_messages=self.link.bad_messages,
            replies_refused=self.controller.replies_refused,
            events_dropped=self.inbox.dropped_messages, link_drops=self.link.drops,
            cpu_temp_c=cpu_temperature(),
        )

    def _report_health(self) -> None:
        # Retained: staff see every kiosk's last report (and when it came) even after it left.
        self.link.publish(self.topics.health,
                          protocol.encode_health(self.health(), time.time()), qos=0, retain=True)

    def _dispatch(self, events: tuple[Event, ...]) -> None:
        now = time.monotonic()
        groups = []
        for event in events:
            if isinstance(event, DeviceProblem):  # a device failed or recovered while running
                if event.reason:
                    self.problems.set(event.device, f"{event.device}: {event.reason}")
                else:
                    self.problems.clear(event.device)
                continue
            if isinstance(event, StaffMessage):
                self.staff.handle(event)  # checked and carried out by kiosk.provisioning
                continue
            if isinstance(event, CodeRead):
                self.scans_seen += 1
            groups.append(self.controller.handle(event, now))
        self._carry_out(groups, now)
        for event in events:
            match event:
                case LinkUp():
                    self.staff.link_up()
                    self.publisher.pump()
                case Tick():
                    self.presenter.tick(now)  # animation, a reply's story, burn-in protection

    def _carry_out(self, groups: list[list[Action]], now: float) -> None:
        """Carry out each event's actions; every ``Record`` of them is committed first, in one
        transaction. If that fails, nothing after a ``Record`` runs (it would tell the
        customer "checked in"): the controller is told why, and shows it instead."""
        records = [action.checkin for group in groups for action in group
                   if isinstance(action, Record)]
        failed = self._record(records, now) if records else None
        for group in groups:
            if failed is not None and any(isinstance(action, Record) for action in group):
                checkin = next(a.checkin for a in group if isinstance(a, Record))
                group = self.controller.handle(RecordFailed(checkin, failed), now)
            for action in group:
                self._act(action)

    def _record(self, checkins: list[CheckIn], now: float) -> str | None:
        """Commit ``checkins`` durably; None on success, else why they were refused."""
        payloads = [protocol.encode_checkin(c) for c in checkins]
        try:
            rows = self.outbox.add_many(
                [(c.event_id, payload) for c, payload in zip(checkins, payloads, strict=True)],
                [(c.member_id, c.captured_at) for c in checkins])
        except OutboxError as exc:
            self.visits_refused += len(checkins)
            text = (f"outbox full ({self.outbox.depth} check-ins waiting)"
                    if isinstance(exc, OutboxFull) else f"storage: {exc}")
            self.problems.set("storage", text)
            self._next_storage_check = now + STORAGE_CHECK_S
            return str(exc)
        before, self.checkins_recorded = self.checkins_recorded, self.checkins_recorded + len(rows)
        if before // FORGET_EVERY != self.checkins_recorded // FORGET_EVERY:
            try:
                self.outbox.forget_scans_before(time.time() - self.config.counter.cooldown_s)
            except OutboxError as exc:  # only housekeeping: try again a thousand visits later
                log.warning("old check-in times not cleaned up: %s", exc)
        self.publisher.stored(list(zip(rows, payloads, strict=True)),
                              online=self.controller.online)
        return None

    def _act(self, action: Action) -> None:
        match action:
            case Record():
                pass  # committed by _carry_out before anything else ran
            case Show(screen=screen):
                self._wanted = screen
                self._present(force=True)
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

    def _present(self, force: bool = False) -> None:
        """Show the controller's screen, or what stands in for its idle screen: "out of
        service" while no visit can be stored, the staff screen while identifying, the pairing
        code until enrolled. Called again whenever one of those changes."""
        if self._wanted is None:
            return
        now = time.monotonic()
        screen = self._wanted
        if isinstance(screen, Idle) and "storage" in self.problems:
            screen = OutOfService(Fault.OUTBOX_FULL if self.outbox.full else Fault.HARDWARE,
                                  self.problems.text("storage"))
        elif isinstance(screen, Idle) and now < self._identify_until:
            screen = StaffInfo(self.device_id, self._identify_address,
                               "connected" if self.link.connected else "offline",
                               self.staff.shadow.version, identify=True)
        else:
            screen = self.staff.screen_for(screen)  # the pairing code, until enrolled
        if force or screen != self.screen:
            self.screen = screen
            self.presenter.show(screen, now)

    def _problems_changed(self, state: str, reason: str) -> None:
        self.link.set_state(state, reason)
        self._present()

    # --- what staff commands use (kiosk.provisioning.commands.Parts) ---------

    def _publish_staff(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            self.link.publish(topic, payload, qos=1, retain=retain)
        except LinkError as exc:
            log.warning("staff answer not sent: %s", exc)

    def signal(self, pattern: str) -> bool:
        """Run a light pattern; False when no lights are fitted. ``identify`` also puts the
        staff screen (device id, address, broker, config version) up for a while."""
        if pattern == "identify":
            self._identify_until = time.monotonic() + IDENTIFY_S
            # The route (and a DNS lookup of the broker's name) once, not on every tick
            # while the staff screen is up: with the network down each could block the loop.
            self._identify_address = local_address(self.config.mqtt.host)
            self._present()
        if self.hardware.lights is None:
            return False
        self.hardware.lights.show(pattern)
        return True

    def display_size(self) -> tuple[int, int] | None:
        """The display's size, or None when there is none."""
        return self.display.size if self.display else None

    def show_frame(self, image: Image.Image | None) -> None:
        """Show ``image`` (None: the customer's screen again)."""
        if image is not None and self.display:
            self.display.show(image)
        elif image is None and self.screen is not None:
            self.presenter.show(self.screen, time.monotonic())

    def set_contrast(self, level: int) -> bool:
        """The display's brightness, 0-255; False when there is no display."""
        if not self.display:
            return False
        self.presenter.set_brightness(level)
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
        while (event := self.inbox.get(0)) is not None:  # codes read before the sources
            self._take(event)                             # stopped are still check-ins
        self._flush()
        self.link.stop()
        if self.display:
            self.display.stop()
        self.hardware.close()
        self._db.close()
        self.lock.release()
        log.info("stopped: %d check-ins recorded, %d delivered, %d refused by the broker, "
                 "%d waiting in the outbox; %d connects, %d malformed messages, "
                 "%d events dropped", self.checkins_recorded, self.publisher.delivered,
                 self.publisher.refused, self.outbox.depth, self.link.connects,
                 self.link.bad_messages, self.inbox.dropped_messages)


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
