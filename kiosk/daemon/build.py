"""The composition root: the one place that makes a kiosk's parts and wires them together.

Only here (and in ``drivers.factory``) is it known whether the hardware is real
or simulated; every part gets what it needs handed in, never reaches for it.
:func:`serve` builds a new kiosk after each in-process restart (a ``restart``
command, or staff's new config).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from drivers.base import Hardware
from drivers.display import DisplayWorker
from drivers.factory import SimHandles, make_hardware
from kiosk.config import Config
from kiosk.counter.controller import RECENT_CHECKINS, Controller, Timing
from kiosk.counter.members import MemberCodes, tag_sources
from kiosk.counter.screens import Fault, OutOfService, Screen
from kiosk.daemon.actions import Actions
from kiosk.daemon.app import App
from kiosk.daemon.health import Carried, HealthReport
from kiosk.daemon.inbox import Inbox
from kiosk.daemon.problems import Problems
from kiosk.daemon.staffparts import StaffParts
from kiosk.mqtt import protocol
from kiosk.mqtt.client import session_kept
from kiosk.mqtt.delivery import Delivery
from kiosk.mqtt.hass import Discovery
from kiosk.mqtt.link import Link, LinkError
from kiosk.mqtt.publisher import Publisher
from kiosk.ops.identity import default_device_id
from kiosk.ops.metrics import MetricsFile
from kiosk.provisioning import overlay
from kiosk.provisioning.desk import StaffDesk
from kiosk.provisioning.releases import Layout
from kiosk.provisioning.shadow import Shadow
from kiosk.provisioning.update import Updates
from kiosk.store.cache import MemberCache
from kiosk.store.db import open_db, opened_on_full_disk
from kiosk.store.outbox import Outbox
from kiosk.store.salvage import Salvaged
from kiosk.store.statedir import StateLock
from kiosk.ui.presenter import Presenter
from kiosk.ui.stage import Stage

log = logging.getLogger(__name__)

SESSION_FILE = "mqtt-session"
"""In the state directory: the MQTT identity of the last start (``session_kept``)."""


def build(base: Config, hardware: tuple[Hardware, SimHandles] | None = None,
          carried: Carried | None = None) -> App:
    """A kiosk from the local config ``base`` with staff's config over it, ready to run;
    ``carried``: the counts of the parts it replaces (an in-process restart)."""
    start = overlay.startup(base)
    config = start.config
    device_id = config.kiosk.device_id or default_device_id()
    state_dir = Path(config.kiosk.state_dir)
    lock = StateLock(state_dir)
    try:
        db, moved_to = open_db(state_dir / "kiosk.db")
    except BaseException:
        lock.release()
        raise
    outbox = Outbox(db, config.outbox.max_rows, int(config.outbox.max_mb * 1_000_000))
    cache = MemberCache(db)
    known = cache.load()  # shared with the controller; flush-cache empties it
    counter, members = config.counter, config.members
    controller = Controller(
        MemberCodes(members.pattern, members.card_issuers, members.tag_ids,
                    tag_sources(config.serial.framing)),
        Timing(counter.reply_timeout_s, counter.result_screen_s, counter.cooldown_s),
        device_id, uuid.uuid4().hex[:12], known,
        recent=outbox.recent_scans(time.time() - counter.cooldown_s))
    _expect_stored_replies(controller, outbox)
    inbox = Inbox()
    topics = protocol.Topics(config.mqtt.topic_prefix, config.kiosk.site, device_id)
    hass = config.homeassistant
    try:
        discovery: Discovery | None = Discovery(topics, hass.discovery, hass.discovery_prefix,
                                                config.telemetry.interval_s)
        discovery_problem = ""
    except ValueError as exc:  # a device id Home Assistant cannot take: check-ins go on
        discovery, discovery_problem = None, f"homeassistant: {exc}"
        log.error("%s", discovery_problem)
    link = Link(config.mqtt, topics, device_id, inbox.put, window=config.outbox.publish_window,
                discovery=discovery, resume=session_kept(state_dir / SESSION_FILE, config.mqtt,
                                                         device_id, config.kiosk.site))
    devices, sim = hardware or make_hardware(config.hardware)
    display = DisplayWorker(devices.display) if devices.display else None
    presenter = Presenter(display, config.ui, config.display.kind, config.display.contrast,
                          config.counter.result_screen_s)
    stage = Stage(presenter)

    def changed(state: str, reason: str) -> None:
        link.set_state(state, reason)
        stage.refresh(time.monotonic())  # out of service begins or ends

    problems = Problems(changed)
    full_disk = opened_on_full_disk(db)

    def storage(text: str | None) -> None:
        if text:
            problems.set("storage", text)
            return
        problems.clear("storage")
        if full_disk:  # it was opened for this process alone: open it shared again
            parts.request_restart("the disk has room again")

    delivery = Delivery(outbox, Publisher(outbox, link, config.outbox.publish_window,
                                          config.outbox.ack_timeout_s),
                        counter.cooldown_s, storage, config.outbox.backend_alarm_s,
                        problems.reporter("backend"))
    if full_disk:  # reported now, and tried every few seconds until the disk has room
        delivery.trouble = "storage: the disk is full"
        problems.set("storage", delivery.trouble)
    health = HealthReport(problems, controller, inbox, delivery, link, devices.sources, carried)
    publish = _staff_answers(link)
    parts = StaffParts(device_id, config.mqtt.host, devices.lights, display, presenter, stage,
                       cache, known, health, lambda: controller.online,
                       lambda: shadow.version)
    shadow = Shadow(base, start, topics, publish, parts.request_restart)
    updates = Updates(config, Layout.of(config), link.refresh_state, lambda: link.connected,
                      lambda: link.lifecycle)
    link.release = lambda: updates.state
    staff = StaffDesk(parts, config, db, topics, publish, shadow, updates)
    for stand_in in (_out_of_service(delivery), parts.stand_in, staff.stand_in):
        stage.add(stand_in)  # in this order: a kiosk that cannot store visits says so first
    for problem in [*devices.problems, discovery_problem]:
        if problem:
            problems.set(problem, problem)
    salvaged = Salvaged(db, problems.reporter("database"))
    if moved_to and "database" not in problems:  # nothing in it could be salvaged
        problems.set("database", f"database was corrupt, moved to {moved_to}")
    return App(config=config, device_id=device_id, topics=topics, inbox=inbox,
               controller=controller, delivery=delivery, link=link, hardware=devices, sim=sim,
               actions=Actions(controller, delivery, stage, devices.lights, cache),
               display=display, presenter=presenter, stage=stage, staff=staff, parts=parts,
               problems=problems, health=health, cache=cache, db=db, lock=lock,
               salvaged=salvaged,
               metrics=MetricsFile(Path(config.metrics.textfile_dir), config.metrics.interval_s,
                                   device_id, config.kiosk.site)
               if config.metrics.textfile_dir else None)


def serve(config: Config, stop: threading.Event,
          started: Callable[[App], None] = lambda _app: None,
          carried: Carried | None = None) -> None:
    """Run kiosks built from ``config`` until ``stop``: a restart (a command, or staff's
    new config) stops the parts in order and builds them again from the files; their
    counts go on (``carried``: those of parts run before)."""
    while not stop.is_set():
        app = build(config, carried=carried)
        started(app)
        app.run(stop)
        if app.restart_requested is None:
            return
        carried = app.health.carry()


def _expect_stored_replies(controller: Controller, outbox: Outbox) -> None:
    """Check-ins stored before a restart are sent now: their replies are ours too."""
    for _row_id, _event_id, payload in outbox.after(0, RECENT_CHECKINS):
        try:
            checkin, _replayed = protocol.decode_checkin(payload)
        except protocol.ProtocolError:  # stored by another version; it is still sent
            continue
        controller.expect_reply(checkin.event_id, checkin.member_id)


def _out_of_service(delivery: Delivery) -> Callable[[], Screen | None]:
    """While no visit can be stored, the idle screen says so (and why)."""
    def stand_in() -> Screen | None:
        if delivery.trouble is None:
            return None
        return OutOfService(Fault.OUTBOX_FULL if delivery.outbox.full else Fault.HARDWARE,
                            delivery.trouble)
    return stand_in


def _staff_answers(link: Link) -> Callable[[str, bytes, bool], None]:
    """How staff's results and reports go out: QoS 1, and a refusal is logged, never raised."""
    def publish(topic: str, payload: bytes, retain: bool) -> None:
        try:
            link.publish(topic, payload, qos=1, retain=retain)
        except LinkError as exc:
            log.warning("staff answer not sent: %s", exc)
    return publish
