"""Carrying out what the controller decided: the commit first, then screen, light and cache.

The controller is pure: it returns actions. Their order is the promise to the
customer — a ``Record`` is committed before the ``Show`` that says "checked
in" — so they are carried out here, in one place, with every ``Record`` of a
batch (a rush) committed in one transaction. The log's ``check-in <id>`` line
is written here too, after the commit, so it never names a visit a crash or a
full disk kept out of the outbox.
"""

from __future__ import annotations

import logging
import sqlite3

from drivers.lights import Lights
from kiosk.counter.controller import Controller
from kiosk.counter.events import Action, Record, RecordFailed, Remember, Show, Signal
from kiosk.counter.members import MemberStatus, redact
from kiosk.mqtt.delivery import Delivery
from kiosk.store.cache import MemberCache
from kiosk.ui.lights import cue
from kiosk.ui.stage import Stage

log = logging.getLogger(__name__)


class Actions:
    """Carries out the controller's actions; called only from the controller thread."""

    def __init__(self, controller: Controller, delivery: Delivery, stage: Stage,
                 lights: Lights | None, cache: MemberCache) -> None:
        self._controller = controller
        self._delivery = delivery
        self._stage = stage
        self._lights = lights
        self._cache = cache

    def carry_out(self, groups: list[list[Action]], now: float) -> None:
        """Carry out each event's actions; every ``Record`` of them is committed first, in one
        transaction. If that fails, nothing after a ``Record`` runs (it would tell the
        customer "checked in"): the controller is told why, and shows it instead."""
        records = [action.checkin for group in groups for action in group
                   if isinstance(action, Record)]
        failed = self._delivery.record(records, self._controller.online) if records else None
        if failed is None:
            for checkin in records:  # only now: a line for a visit that was never stored lies
                log.info("check-in %s of %s from %s", checkin.event_id,
                         redact(checkin.member_id), checkin.source)
        self._remember([(action.member_id, action.status) for group in groups
                        for action in group if isinstance(action, Remember)])
        for group in groups:
            if failed is not None and any(isinstance(action, Record) for action in group):
                checkin = next(a.checkin for a in group if isinstance(a, Record))
                group = self._controller.handle(RecordFailed(checkin, failed), now)
            for action in group:
                self._act(action, now)

    def _remember(self, standings: list[tuple[str, MemberStatus]]) -> None:
        """Cache the members' standings, a drain's replies in one write, before their screens
        show: a balance on screen is one the cache holds too."""
        if not standings:
            return
        try:
            self._cache.put_many(standings)
        except sqlite3.Error as exc:  # a cache miss later is harmless
            log.warning("member cache not updated: %s", exc)

    def _act(self, action: Action, now: float) -> None:
        match action:
            case Record():
                pass  # committed by carry_out before anything else ran
            case Show(screen=screen):
                self._stage.want(screen, now)
            case Signal(cue=meaning):
                if self._lights is not None:
                    cue(self._lights, meaning)
            case Remember():
                pass  # written together, first, by carry_out
