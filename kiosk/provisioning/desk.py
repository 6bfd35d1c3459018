"""The staff desk: every message on a staff topic comes here, on the controller thread.

It drops retained commands, has the guard check everything else, runs what was
admitted and answers on ``cmd/<name>/result`` (or ``config/reported``), saying why
when it refused. Nothing here raises: a bad message is counted and answered.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from kiosk.config import Config
from kiosk.counter.events import StaffMessage
from kiosk.counter.screens import Pairing, Screen
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Rejected, Sealed, unseal
from kiosk.provisioning.commands import CommandError, Commands, Parts
from kiosk.provisioning.enrollment import UNPROVEN, Enrollment, shown
from kiosk.provisioning.guard import REPLAYABLE, Guard, SequenceBook, clock_synced
from kiosk.provisioning.shadow import Shadow
from kiosk.provisioning.update import Updates
from kiosk.trust.signing import Verifier

log = logging.getLogger(__name__)

ANSWER_RATE = 5.0
"""Refusals anyone on the broker can provoke (unsigned or forged messages, a re-sent captured
order, a guessed pairing code) answered per second, at most; refusals of fresh signed orders
are always answered."""
ANSWER_BURST = 20

Publish = Callable[[str, bytes, bool], None]
"""``publish(topic, payload, retain)`` at QoS 1; must not raise."""


class StaffDesk:
    """Checks and carries out staff orders for one kiosk."""

    def __init__(self, parts: Parts, config: Config, conn: sqlite3.Connection,
                 topics: protocol.Topics, publish: Publish, shadow: Shadow,
                 updates: Updates | None = None) -> None:
        self._topics = topics
        self._publish = publish
        self.shadow = shadow
        self.verifier = Verifier.from_texts(list(config.staff.trusted_keys))
        book, clock = SequenceBook(conn), clock_synced(config.staff.clock_synced_file)
        self.guard = Guard(self.verifier, topics.site, topics.device_id, book, clock)
        self.enrollment = Enrollment(not config.staff.trusted_keys, topics, shadow, book, clock,
                                     publish)
        self.commands = Commands(parts, lambda: self.shadow.version)
        self.updates = updates
        if updates is not None:
            self.commands.add("update", updates.command)
        self.carried_out = 0
        self.rejected = 0
        self.retained_dropped = 0
        self.unanswered = 0
        """Refusals anyone could provoke, not answered (over ANSWER_RATE)."""
        self._unanswered_told = 0
        self._budget = float(ANSWER_BURST)
        self._budget_at = time.monotonic()

    def handle(self, message: StaffMessage) -> None:
        """Check one message and act on it, or refuse it and say why."""
        route = self._topics.staff_order(message.topic)
        if route is None:
            return
        kind, name = route
        if message.retained and kind != "config":
            # A retained command would fire again on every reconnect: never run it.
            self.retained_dropped += 1
            log.warning("dropped a retained command on %s", message.topic)
            return
        sealed: Sealed | None = None
        try:
            sealed = unseal(message.payload)
            if kind == "config":
                self.shadow.desired(sealed, self.guard)
                return
            if kind == "enroll":
                order = self.enrollment.handle(sealed)
                self._answer(name, order.cmd_id, True, "", {"enrolled": True})
                return
            order = self.guard.admit(sealed, kind, name)
        except Rejected as exc:
            self.rejected += 1
            if _anyone_could(kind, exc) and not self._may_answer():
                self.unanswered += 1  # a flood of junk: counted, not answered one by one
                return
            log.warning("refused a staff %s on %s: %s", kind, message.topic, exc)
            if kind == "config":
                self.shadow.refused(sealed, exc)
            else:
                self._answer(name, sealed.order.cmd_id if sealed else "", False, str(exc))
            return
        self._run(name, order.cmd_id, order.args)

    def _may_answer(self) -> bool:
        """A token bucket for answering unsigned junk, so a flood cannot make the kiosk
        publish (and log) as much as it receives."""
        now = time.monotonic()
        self._budget = min(ANSWER_BURST, self._budget + (now - self._budget_at) * ANSWER_RATE)
        self._budget_at = now
        if self._budget < 1:
            return False
        if self.unanswered > self._unanswered_told:
            log.warning("%d more unsigned, forged or replayed staff messages refused without "
                        "an answer",
                        self.unanswered - self._unanswered_told)
            self._unanswered_told = self.unanswered
        self._budget -= 1
        return True

    def _run(self, name: str, cmd_id: str, args: dict[str, Any]) -> None:
        try:
            data = self.commands.run(name, args)
        except CommandError as exc:
            log.warning("command %s (%s) failed: %s", name, cmd_id, exc)
            self._answer(name, cmd_id, False, str(exc))
            return
        self.carried_out += 1
        log.info("command %s (%s) carried out", name, cmd_id)
        self._answer(name, cmd_id, True, "", data)

    def _answer(self, name: str, cmd_id: str, ok: bool, error: str,
                data: dict[str, Any] | None = None) -> None:
        self._publish(self._topics.command_result(name),
                      protocol.encode_result(cmd_id, ok, error[:protocol.MAX_REASON], data), False)

    def link_up(self) -> None:
        """Connected: say which config is in force (and ask to be enrolled, if not yet)."""
        self.shadow.link_up()
        self.enrollment.link_up()

    def stand_in(self) -> Screen | None:
        """While waiting to be enrolled, the pairing code stands in for the idle screen."""
        if self.enrollment.waiting:
            return Pairing(self._topics.device_id, shown(self.enrollment.code))
        return None

    def tick(self, now: float) -> None:
        """Time passes: end display tests, roll back a config that never connected, write the
        release heartbeat."""
        self.commands.tick(now)
        self.shadow.tick(now)
        if self.updates is not None:
            self.updates.tick(now)


def _anyone_could(kind: str, refusal: Rejected) -> bool:
    """True when anyone on the broker could have provoked ``refusal``: junk, a forgery, a
    re-sent captured order, or an enrollment whose pairing code did not match."""
    return (not refusal.signed or refusal.code in REPLAYABLE
            or (kind == "enroll" and refusal.code in UNPROVEN))
