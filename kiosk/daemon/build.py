"""The composition root: the one place that makes a kiosk's parts and wires them together.

Only here (and in ``drivers.factory``) is it known whether the hardware is real
or simulated; every part gets what it needs handed in, never reaches for it.
:func:`serve` builds a new kiosk after each in-process restart (a ``restart``
command, or staff's new config that no running part can take).

Staff's new config is applied as a difference: :data:`PARTS` says which settings
each part is made with and how it takes new ones; :class:`Running` compares the
config in force with the new one and changes only those parts, on the controller
thread. A customer at the counter, the readers and the MQTT connection are not
disturbed by a new shop name, and the health counters and uptime go on whatever
changed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
from kiosk.provisioning.shadow import Shadow, Took
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
BATCHES_FILE = "backend-batches"
"""In the state directory: the broker whose backend has said it takes batches of check-ins
(``kiosk.mqtt.publisher``)."""


@dataclass(frozen=True)
class Part:
    """A part of the running kiosk, the settings it is made with, and how it takes new ones."""

    name: str
    settings: tuple[str, ...]
    """``section`` (each of its keys) or ``section.key``."""
    took: Took
    why: str
    take: Callable[[App, Config], None] | None = None
    """Puts the new config in the running part (LIVE and RECONNECT parts)."""


def _screen(app: App, new: Config) -> None:
    app.presenter.retune(new.ui, new.display.contrast, new.counter.result_screen_s)


def _counter(app: App, new: Config) -> None:
    app.controller.retune(_member_codes(new), _timing(new))


def _delivery(app: App, new: Config) -> None:
    outbox = new.outbox
    app.outbox.set_limits(outbox.max_rows, _max_bytes(new))
    app.delivery.retune(new.counter.cooldown_s, outbox.backend_alarm_s)
    app.delivery.publisher.retune(outbox.publish_window, outbox.ack_timeout_s)


def _log_level(_app: App, new: Config) -> None:
    logging.getLogger().setLevel(new.kiosk.log_level)  # as kiosk.ops.logs.setup sets it


def _reports(app: App, new: Config) -> None:
    app.metrics = _metrics(new, app.device_id)  # the health interval: read at each turn


def _link(app: App, new: Config) -> None:
    discovery, _problem = _discovery(new, app.topics)  # the device id is the file's: no news
    app.link.renew(new.mqtt, discovery, _resume(new, app.device_id))
    app.delivery.publisher.relinked()
    app.parts.broker_host = new.mqtt.host


PARTS: tuple[Part, ...] = (
    Part("screen", ("ui", "display.contrast", "counter.result_screen_s"), Took.LIVE,
         "the presenter draws each frame from its settings and hands the contrast to the "
         "display thread: the panel is not opened again", _screen),
    Part("counter", ("members", "counter"), Took.LIVE,
         "the controller reads member code formats and timings at each event", _counter),
    Part("delivery", ("outbox", "counter.cooldown_s"), Took.LIVE,
         "bounds, the publish window and timeouts are read at each check-in, send and tick",
         _delivery),
    Part("log", ("kiosk.log_level",), Took.LIVE, "the root logger's level", _log_level),
    Part("reports", ("telemetry.interval_s", "metrics.interval_s"), Took.LIVE,
         "read when the next report is due", _reports),
    Part("trial", ("staff.rollback_after_s",), Took.LIVE,
         "the shadow takes it from each promoted config (a trial runs under the last good "
         "value): nothing to restart"),
    Part("link", ("mqtt", "homeassistant"), Took.RECONNECT,
         "an MQTT client is made with its broker, credentials, session and "
         "Home Assistant discovery (whose configs name the health interval, when it is on): "
         "a new client "
         "connects with them, and check-ins the old one had in flight are sent again (the "
         "backend deduplicates); the config holds once it connects, else it is rolled back",
         _link),
    Part("kiosk", ("mqtt.topic_prefix", "staff.trusted_keys"), Took.RESTART,
         "every part names its topics, and the staff desk, its guard and enrollment are made "
         "with the trusted keys: the kiosk's parts are built again"),
)
"""The one map from settings to the parts they restart, in the order parts take a new config
(the link last: it says the new state once it connects). A changed setting no part names (a
camera or reader setting: ``drivers.factory`` opens the devices together, none is opened
again alone) rebuilds the whole kiosk, as does any RESTART part."""


def _changed(old: Config, new: Config) -> set[str]:
    """``section.key`` of every setting that differs; a new health interval is news to Home
    Assistant's discovery too, where it is on (its configs name the interval)."""
    before, after = asdict(old), asdict(new)
    changed = {f"{section}.{key}" for section, values in before.items()
               for key, value in values.items() if after[section][key] != value}
    if "telemetry.interval_s" in changed and (old.homeassistant.discovery
                                              or new.homeassistant.discovery):
        changed.add("homeassistant.discovery_interval")
    return changed


class Running:
    """The running kiosk's parts as staff's new config changes them
    (:class:`kiosk.provisioning.shadow.Reconfigure`); controller thread only."""

    def __init__(self, app: Callable[[], App]) -> None:
        self._app = app

    @staticmethod
    def parts(old: Config, new: Config) -> list[Part] | None:
        """The parts whose settings changed, in :data:`PARTS` order; None: the whole kiosk
        must be built again."""
        touched: set[str] = set()
        for key in _changed(old, new):
            named = {part.name for part in PARTS
                     if key in part.settings or key.split(".")[0] in part.settings}
            if not named:
                return None
            touched |= named
        found = [part for part in PARTS if part.name in touched]
        return None if any(part.took is Took.RESTART for part in found) else found

    def plan(self, old: Config, new: Config) -> Took:
        """How ``new`` is taken over ``old``: by running parts, by a new connection, or by
        building the kiosk again."""
        parts = self.parts(old, new)
        if parts is None:
            return Took.RESTART
        return Took.RECONNECT if any(p.took is Took.RECONNECT for p in parts) else Took.LIVE

    def take(self, new: Config) -> None:
        """Give each changed part its new settings, in order."""
        app = self._app()
        parts = self.parts(app.config, new) or []
        log.info("new config for: %s", ", ".join(part.name for part in parts) or "nothing")
        app.config = new
        for part in parts:
            if part.take is not None:
                part.take(app, new)


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
    outbox = Outbox(db, config.outbox.max_rows, _max_bytes(config))
    cache = MemberCache(db)
    known = cache.load()  # shared with the controller; flush-cache empties it
    controller = Controller(_member_codes(config), _timing(config), device_id,
                            uuid.uuid4().hex[:12], known,
                            recent=outbox.recent_scans(time.time() - config.counter.cooldown_s))
    _expect_stored_replies(controller, outbox)
    inbox = Inbox()
    topics = protocol.Topics(config.mqtt.topic_prefix, config.kiosk.site, device_id)
    discovery, discovery_problem = _discovery(config, topics)
    if discovery_problem:
        log.error("%s", discovery_problem)
    link = Link(config.mqtt, topics, device_id, inbox.put,
                discovery=discovery, resume=_resume(config, device_id))
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
                                          config.outbox.ack_timeout_s,
                                          batches_marker=(state_dir / BATCHES_FILE,
                                                          backend_identity(config))),
                        config.counter.cooldown_s, storage, config.outbox.backend_alarm_s,
                        problems.reporter("backend"))
    if full_disk:  # reported now, and tried every few seconds until the disk has room
        delivery.trouble = "storage: the disk is full"
        problems.set("storage", delivery.trouble)
    health = HealthReport(problems, controller, inbox, delivery, link, devices.sources, carried)
    publish = _staff_answers(link)
    parts = StaffParts(device_id, config.mqtt.host, devices.lights, display, presenter, stage,
                       cache, known, health, lambda: controller.online,
                       lambda: shadow.version)
    shadow = Shadow(base, start, topics, publish, parts.request_restart, Running(lambda: app))
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
    app = App(config=config, device_id=device_id, topics=topics, inbox=inbox,
               controller=controller, delivery=delivery, link=link, hardware=devices, sim=sim,
               actions=Actions(controller, delivery, stage, devices.lights, cache),
               display=display, presenter=presenter, stage=stage, staff=staff, parts=parts,
               problems=problems, health=health, cache=cache, db=db, lock=lock,
               salvaged=salvaged, metrics=_metrics(config, device_id))
    return app


def serve(config: Config, stop: threading.Event,
          started: Callable[[App], None] = lambda _app: None,
          carried: Carried | None = None) -> None:
    """Run kiosks built from ``config`` until ``stop``: a restart (a command, or staff's
    new config that the running parts cannot take) stops the parts in order and builds
    them again from the files; their counts go on (``carried``: those of parts run before)."""
    while not stop.is_set():
        app = build(config, carried=carried)
        started(app)
        app.run(stop)
        if app.restart_requested is None:
            return
        carried = app.health.carry()


def _member_codes(config: Config) -> MemberCodes:
    members = config.members
    return MemberCodes(members.pattern, members.card_issuers, members.tag_ids,
                       tag_sources(config.serial.framing))


def _timing(config: Config) -> Timing:
    counter = config.counter
    return Timing(counter.reply_timeout_s, counter.result_screen_s, counter.cooldown_s)


def _max_bytes(config: Config) -> int:
    return int(config.outbox.max_mb * 1_000_000)


def _discovery(config: Config, topics: protocol.Topics) -> tuple[Discovery | None, str]:
    """Home Assistant discovery, or why not (a device id it cannot take: check-ins go on)."""
    hass = config.homeassistant
    try:
        return Discovery(topics, hass.discovery, hass.discovery_prefix,
                         config.telemetry.interval_s), ""
    except ValueError as exc:
        return None, f"homeassistant: {exc}"


def _resume(config: Config, device_id: str) -> bool:
    """Take up the broker's session of the last connection with the same identity."""
    return session_kept(Path(config.kiosk.state_dir) / SESSION_FILE, config.mqtt, device_id,
                        config.kiosk.site)


def backend_identity(config: Config) -> bytes:
    """Which backend a ``backend-batches`` file speaks of: the broker and topic prefix it was
    heard on (a kiosk moved to another says nothing of the new one's backend)."""
    return json.dumps([config.mqtt.host, config.mqtt.port, config.mqtt.topic_prefix]).encode()


def _metrics(config: Config, device_id: str) -> MetricsFile | None:
    """node_exporter's textfile (``metrics.textfile_dir``); None: off."""
    if not config.metrics.textfile_dir:
        return None
    return MetricsFile(Path(config.metrics.textfile_dir), config.metrics.interval_s, device_id,
                       config.kiosk.site)


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
