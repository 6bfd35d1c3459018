"""The controller loop: one thread owns the kiosk's state, and every event has one owner.

The thread that calls :meth:`App.run` is the controller thread: the only one
that touches the controller, the database, the display and the lights.
Everything else (code sources, paho, the display worker) only puts events on
the inbox. :meth:`App._route` is the one place that says who handles which
event; :func:`kiosk.daemon.build.build` makes the parts.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from drivers.base import Hardware
from drivers.display import DisplayWorker
from drivers.factory import SimHandles
from kiosk import __version__
from kiosk.config import Config
from kiosk.counter.controller import Controller
from kiosk.counter.events import (
    Acked,
    CodeRead,
    DeviceProblem,
    Event,
    LinkUp,
    Reply,
    ScansLost,
    StaffMessage,
    Tick,
)
from kiosk.counter.screens import Screen
from kiosk.daemon.actions import Actions
from kiosk.daemon.health import HealthReport
from kiosk.daemon.inbox import Inbox
from kiosk.daemon.problems import Problems
from kiosk.daemon.staffparts import StaffParts
from kiosk.mqtt import protocol
from kiosk.mqtt.delivery import Delivery
from kiosk.mqtt.link import Link
from kiosk.ops import logs, systemd
from kiosk.ops.metrics import MetricsFile
from kiosk.ops.watchdog import Watchdog
from kiosk.provisioning.desk import StaffDesk
from kiosk.store.cache import MemberCache
from kiosk.store.outbox import Outbox
from kiosk.store.salvage import Salvaged
from kiosk.store.statedir import StateLock
from kiosk.ui.presenter import Presenter
from kiosk.ui.stage import Stage

log = logging.getLogger(__name__)

TICK_S = 0.2


@dataclass(eq=False)
class App:
    """One running kiosk: its parts, made by :func:`~kiosk.daemon.build.build`, and its loop."""

    config: Config
    device_id: str
    topics: protocol.Topics
    inbox: Inbox
    controller: Controller
    actions: Actions
    delivery: Delivery
    link: Link
    hardware: Hardware
    sim: SimHandles
    display: DisplayWorker | None
    presenter: Presenter
    stage: Stage
    staff: StaffDesk
    parts: StaffParts
    problems: Problems
    health: HealthReport
    cache: MemberCache
    db: sqlite3.Connection
    lock: StateLock
    salvaged: Salvaged
    metrics: MetricsFile | None = None
    """node_exporter's textfile (``metrics.textfile_dir``); None: off."""
    _ready: threading.Event = field(default_factory=threading.Event)
    _scans_lost_told: int = 0

    @property
    def outbox(self) -> Outbox:
        """The check-ins waiting to be delivered."""
        return self.delivery.outbox

    @property
    def screen(self) -> Screen | None:
        """What the display shows now."""
        return self.stage.screen

    @property
    def restart_requested(self) -> str | None:
        """Why the loop should stop and the kiosk be built again (None: it should not)."""
        return self.parts.restart_requested

    @property
    def checkins_recorded(self) -> int:
        """Check-ins committed to the outbox since start."""
        return self.delivery.checkins_recorded

    @property
    def scans_not_taken(self) -> int:
        """Scans that arrived faster than they could be taken (shown and counted)."""
        return self.inbox.dropped_scans

    def wait_ready(self, timeout: float) -> bool:
        """Block until :meth:`run` has started every part (for tests and the demo)."""
        return self._ready.wait(timeout)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then shut down in order. Call from one thread only."""
        self._start()
        watchdog = Watchdog(systemd.watchdog_interval(), {"MQTT network thread": self.link.alive})
        next_tick = next_health = time.monotonic()
        wait = TICK_S
        try:
            while not stop.is_set() and self.restart_requested is None:
                event = self.inbox.get(wait)
                now = time.monotonic()
                ticked = now >= next_tick
                if ticked:
                    next_tick = now + TICK_S
                    self._route(Tick())
                    self._tick(now)  # unguarded, as before: a broken link check must restart us
                if event is not None:
                    self._route(event)
                lost = self.inbox.dropped_scans - self._scans_lost_told  # read once: it grows
                if lost > 0:
                    self._scans_lost_told += lost
                    self._route(ScansLost(lost))
                self.delivery.turn(ticked, more_waiting=len(self.inbox) > 0)
                # Drawn last: the turn's check-ins are committed and on their way first, and of
                # a rush handled in one turn only the last customer's screen is drawn.
                frame_due = self.presenter.paint(time.monotonic())
                wait = TICK_S if frame_due is None else min(TICK_S, frame_due)
                watchdog.feed(now)  # from this loop: a stuck controller stops the pings
                health_every = self.config.telemetry.interval_s  # staff may change it
                if health_every and now >= next_health and self.link.connected:
                    next_health = now + health_every
                    self._report_health()
                if self.metrics is not None:
                    self.metrics.tick(now, self.health, self.link.connected)
        finally:
            self._shutdown()

    def _route(self, event: Event) -> None:
        """Hand ``event`` to its owner. A bug triggered by one event must not stop the counter
        for the next customer: it is logged, and the loop goes on."""
        try:
            match event:
                case CodeRead():  # a rush is committed in one transaction
                    self._counter([event, *self.inbox.pending_scans()])
                case Acked():  # only delivery cares: a drain's PUBACKs at once
                    self.delivery.acked([event, *self.inbox.pending_acks()])
                case Reply():  # acknowledgements for delivery, standing for the screen
                    replies = [event, *self.inbox.pending_replies()]
                    rows = self.delivery.answered(replies)
                    self._counter([reply for reply in replies if reply.event_id not in rows
                                   or self.controller.remembers(reply.event_id)])
                case DeviceProblem(device=device, reason=reason):
                    if reason:
                        self.problems.set(device, f"{device}: {reason}")
                    else:
                        self.problems.clear(device)
                case StaffMessage():
                    self.staff.handle(event)  # checked and carried out by kiosk.provisioning
                case LinkUp():
                    self._counter([event])
                    self.staff.link_up()
                    self.delivery.publisher.pump()
                case Tick():
                    self._counter([event])
                    self.presenter.tick(time.monotonic())  # animation, a story, burn-in
                case _:  # replies, disconnects, lost scans: the counter's alone
                    self._counter([event])
        except Exception:
            log.exception("failed to handle %s", type(event).__name__)

    def _tick(self, now: float) -> None:
        self.staff.tick(now)
        self.link.supervise(now)
        self.delivery.check_storage(now)
        self.delivery.check_backend(now, self.link.connected)
        self.salvaged.check()  # the kiosk stays degraded until a salvaged visit is delivered
        logs.report_held_back()  # no refusal is held back from the log without a count
        self.stage.refresh(now)  # the staff screen ends, out of service begins or ends

    def _counter(self, events: list[Event]) -> None:
        now = time.monotonic()
        self.actions.carry_out([self.controller.handle(event, now) for event in events], now)

    def _report_health(self) -> None:
        # Retained: staff see every kiosk's last report (and when it came) even after it left.
        try:
            self.link.publish(self.topics.health,
                              protocol.encode_health(self.health(), time.time()), qos=0,
                              retain=True)
        except Exception:  # a report is not worth stopping the counter for
            log.exception("health report failed")

    def _start(self) -> None:
        def report(device: str, reason: str) -> None:  # any device, from its own thread
            self.inbox.put(DeviceProblem(device, reason))

        if self.display:
            self.display.start(report)
        self.actions.carry_out([self.controller.start()], time.monotonic())
        self.presenter.paint(time.monotonic())
        for source in list(self.hardware.sources):
            try:
                source.start(lambda code, name, at: self.inbox.put(CodeRead(code, name, at)),
                             report)
            except Exception as exc:  # e.g. no camera on the ribbon cable
                log.error("%s unavailable: %s", source.name, exc)
                self.problems.set(source.name, f"{source.name}: {exc}")
                self.hardware.sources.remove(source)
        self.link.start()
        if self.outbox.depth:
            log.info("%d check-ins waiting in the outbox from before", self.outbox.depth)
        systemd.notify(f"READY=1\nSTATUS=device {self.device_id}, version {__version__}")
        self._ready.set()

    def _shutdown(self) -> None:
        log.info("stopping")
        systemd.notify("STOPPING=1")
        for source in self.hardware.sources:
            source.stop()
        while (event := self.inbox.get(0)) is not None:  # codes read before the sources
            self._route(event)                            # stopped are still check-ins
        self.delivery.flush()
        if self.metrics is not None:
            self.metrics.write(self.health(), online=False)
        self.link.stop()
        if self.display:
            self.presenter.paint(time.monotonic(), at_once=True)  # the last screen
            self.display.stop()
        self.hardware.close()
        self.db.close()
        self.lock.release()
        publisher = self.delivery.publisher
        log.info("stopped: %d check-ins recorded, %d acknowledged by the backend, %d refused "
                 "by it, %d refused by the broker, %d waiting in the outbox; %d connects, "
                 "%d malformed messages, %d events dropped", self.checkins_recorded,
                 publisher.delivered, publisher.backend_refused, publisher.refused,
                 self.outbox.depth, self.link.connects,
                 self.link.bad_messages, self.inbox.dropped_messages)
