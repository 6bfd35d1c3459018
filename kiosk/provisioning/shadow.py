"""Desired and reported config (device-shadow semantics), on the controller thread.

Staff publish a signed desired config with a ``version`` (retained on
``config/desired``). The kiosk admits it through its guard, refuses a version
not above the one in force (or a config equal to it), checks the merged config
with the file's strict loader and stores it as a trial overlay. Then only what
changed is applied (:class:`Reconfigure`, the kiosk's parts): settings the
running parts take need no proof and the config is promoted at once; a link
that restarts with new settings must connect, and the trial is promoted when it
does; if it has not connected within ``staff.rollback_after_s`` (of the last
good config), the good config is applied again the same way. A change no part
can take while running restarts the kiosk's parts, which try the trial at their
start. Either way ``config/reported`` (retained) says what is in force, secrets
removed, and what was last refused and why.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from kiosk.config import Config
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Rejected, Sealed
from kiosk.provisioning import overlay
from kiosk.provisioning.guard import Guard

log = logging.getLogger(__name__)

REMEMBERED = 64
"""Refused signed configs remembered (in memory) so a replay of one is not answered again."""


class Took(enum.Enum):
    """How the running kiosk takes a new config."""

    LIVE = "live"
    """The parts whose settings changed took them running; the link was not touched."""
    RECONNECT = "reconnect"
    """The link restarted with new settings: the config holds once it connects."""
    RESTART = "restart"
    """A part cannot take it running: the kiosk's parts are built again."""


class Reconfigure(Protocol):
    """The running kiosk's parts, as the shadow changes their config."""

    def plan(self, old: Config, new: Config) -> Took:
        """How ``new`` would be taken over ``old`` (changes nothing)."""

    def take(self, new: Config) -> None:
        """Put ``new`` in force in the running parts (only for LIVE or RECONNECT plans)."""


class Shadow:
    """The config in force, a trial's deadline, and the ``config/reported`` message."""

    def __init__(self, base: Config, start: overlay.Startup, topics: protocol.Topics,
                 publish: Callable[[str, bytes, bool], None],
                 request_restart: Callable[[str], None],
                 parts: Reconfigure | None = None) -> None:
        """``parts``: the running kiosk's parts; None: every new config restarts them."""
        self._base = base
        self._start = start
        self._folder = overlay.folder_of(base)
        self._topics = topics
        self._publish = publish
        self._request_restart = request_restart
        self._parts = parts
        self._deadline = (time.monotonic() + start.rollback_after_s) if start.trial else None
        self._restarting = False
        self.reported = False
        """True once ``config/reported`` has been sent (the kiosk listens to staff by then)."""
        self._last_refusal: dict[str, Any] | None = None
        self._refused: dict[str, None] = {}
        """The orders refused since start (newest last, at most REMEMBERED): answered once."""

    @property
    def version(self) -> int:
        """The version of the config in force (0: the local file alone)."""
        return self._start.applied.version if self._start.applied else 0

    @property
    def config(self) -> Config:
        """The merged config in force."""
        return self._start.config

    def desired(self, sealed: Sealed, guard: Guard) -> None:
        """A desired config arrived: apply what changed, or raise :class:`Rejected`."""
        last = overlay.rejection(self._folder) or {}
        cmd_id = sealed.order.cmd_id
        if self._restarting or cmd_id in (self._cmd_id, last.get("cmd_id")) or (
                cmd_id in self._refused):
            return  # the retained copy (or a replay) of a config already decided on
        order = guard.check(sealed, "config", "config")
        if set(order.args) != {"version", "config"}:
            raise Rejected("invalid", "args: expected exactly version and config")
        self.apply(order.cmd_id, order.args["version"], order.args["config"],
                   lambda: guard.accept(sealed))

    def apply(self, cmd_id: str, version: Any, table: Any, accept: Callable[[], None]) -> None:
        """Check a config whose order passed the guard; if it fits, ``accept()`` the order
        (its sequence number is spent) and apply what changed, else raise :class:`Rejected`
        having written nothing."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise Rejected("invalid", "version: expected an integer from 1")
        if not isinstance(table, dict):
            raise Rejected("invalid", "config: expected a table of sections")
        if version <= self.version:
            raise Rejected("stale-version", f"version {version} is not above {self.version} "
                                            "in force")
        # Changes accumulate: a file that names one key keeps what earlier ones set
        # (e.g. the keys trusted at enrollment).
        table = overlay.combine(self._start.applied.config if self._start.applied else {}, table)
        try:
            merged = overlay.merge(self._base, table)
        except ValueError as exc:
            raise Rejected("invalid", str(exc)) from None
        if merged == self.config:
            raise Rejected("unchanged", f"equal to the config in force (version {self.version}):"
                                        " nothing to change")
        if not merged.staff.trusted_keys:
            raise Rejected("invalid", "staff.trusted_keys would be empty: nobody could "
                                      "manage this kiosk any more")
        accept()
        applied = overlay.Applied(version, cmd_id, table)
        overlay.write_trial(self._folder, applied)
        self._try(merged, applied)

    def _try(self, merged: Config, applied: overlay.Applied) -> None:
        """Put the stored trial ``applied`` (``merged`` over the file) in force: in the running
        parts when they can take it, else by building them again."""
        took = self._plan(merged)
        log.info("config version %d (%s) stored; applying it (%s)", applied.version,
                 applied.cmd_id, took.value)
        if took is Took.RESTART:
            self._restart(f"config version {applied.version}")
            return
        # Laid over a trial that has not connected yet, it is part of that trial: it holds
        # only once the kiosk connects, and is rolled back with it.
        proven_by_link = took is Took.RECONNECT or self._start.trial
        if proven_by_link:  # a process that dies before it connects rolls it back
            overlay.begin_trial(self._folder)
        self._take(merged)
        self._start = overlay.Startup(merged, applied, True, self._start.rollback_after_s)
        self._deadline = time.monotonic() + self._start.rollback_after_s
        if not proven_by_link:  # nothing a connection would prove: in force now
            self._promote()
            self.report()

    def _plan(self, new: Config) -> Took:
        return self._parts.plan(self.config, new) if self._parts else Took.RESTART

    def _take(self, new: Config) -> None:
        if self._parts is not None:
            self._parts.take(new)

    def _restart(self, reason: str) -> None:
        self._restarting = True
        self._request_restart(reason)

    def refused(self, sealed: Sealed | None, rejected: Rejected) -> None:
        """A desired config was refused: report why, and write nothing.

        Nothing refused touches the disk: anyone on the broker can send junk or re-send a
        captured order, and a flood must not wear out the SD card. The retained desired
        config is checked again after a restart, and refused again for the same reason.
        """
        version = sealed.order.args.get("version", 0) if sealed else 0
        if isinstance(version, bool) or not isinstance(version, int):
            version = 0
        cmd_id = sealed.order.cmd_id if sealed else ""
        if sealed and rejected.signed:
            self._refused[cmd_id] = None
            while len(self._refused) > REMEMBERED:
                del self._refused[next(iter(self._refused))]
        self._last_refusal = {"version": version, "cmd_id": cmd_id,
                              "reason": str(rejected)[:500]}
        self.report()

    def link_up(self) -> None:
        """Connected: a trial config has come up; report what is in force."""
        if self._start.trial and self._deadline is not None:
            self._promote()
            log.info("config version %d connected: it is now the good config", self.version)
        self.report()

    def _promote(self) -> None:
        """The trial is the good config now; its rollback time holds for the next trial."""
        self._deadline = None
        overlay.promote(self._folder)
        self._start = overlay.Startup(self.config, self._start.applied, False,
                                      self.config.staff.rollback_after_s)

    def tick(self, now: float) -> None:
        """Roll a trial config back when it has not connected in time: the good config is
        applied again, as a difference like any other."""
        if self._deadline is None or now < self._deadline or self._restarting:
            return
        self._deadline = None
        overlay.roll_back(self._folder, f"no broker connection within "
                                        f"{self._start.rollback_after_s:g} s")
        reason = f"config version {self.version} rolled back"
        good = overlay.in_force(self._base)
        if self._plan(good.config) is Took.RESTART:
            self._restart(reason)
            return
        log.info("%s: applying the good config again", reason)
        self._take(good.config)
        self._start = overlay.Startup(good.config, good.applied, False,
                                      self._start.rollback_after_s)
        self.report()  # queued until the link is back: says what is in force, and why

    def report(self) -> None:
        """Publish (retained) the config in force and the last refusal; and, small, its version
        and digest (a fleet summary reads only those, so equal configs show as equal)."""
        config = overlay.redacted(self.config)
        payload = protocol.encode_reported(self.version, self._cmd_id, config,
                                           self._last_refusal or overlay.rejection(self._folder))
        self._publish(self._topics.config_reported, payload, True)
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        self._publish(self._topics.config_version,
                      protocol.encode_config_version(self.version, digest), True)
        self.reported = True

    @property
    def _cmd_id(self) -> str:
        return self._start.applied.cmd_id if self._start.applied else ""
