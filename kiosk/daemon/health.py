"""The health report staff see on ``tele/health``: one place that knows where each figure lives.

Every counter stays with the part that counts it (the inbox its dropped
events, the link its connects, delivery its check-ins); this module only
gathers them, so a new figure is added in one place and nothing is counted
twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import CodeSource
from kiosk.counter.controller import Controller
from kiosk.daemon.inbox import Inbox
from kiosk.daemon.problems import Problems
from kiosk.daemon.telemetry import Rate, cpu_temperature
from kiosk.mqtt import protocol
from kiosk.mqtt.delivery import Delivery
from kiosk.mqtt.link import Link
from kiosk.ops import logs
from kiosk.store.outbox import local_day


@dataclass(frozen=True)
class Carried:
    """What a kiosk's parts counted before an in-process restart (staff's new config, a
    restart command): the next parts count on from there, so a config change does not make
    the fleet's counters and uptime start again."""

    started_at: float
    """Monotonic time the daemon's first parts started."""
    counts: dict[str, int]


class HealthReport:
    """Builds :class:`~kiosk.mqtt.protocol.Health` from the running parts."""

    def __init__(self, problems: Problems, controller: Controller, inbox: Inbox,
                 delivery: Delivery, link: Link, sources: Sequence[CodeSource],
                 carried: Carried | None = None) -> None:
        self._problems = problems
        self._controller = controller
        self._inbox = inbox
        self._delivery = delivery
        self._link = link
        self._sources = sources
        self._carried = carried or Carried(time.monotonic(), {})
        self._decode_rate = Rate()

    def carry(self) -> Carried:
        """The counts so far, for the parts built after a restart (reads no database)."""
        return Carried(self._carried.started_at, self._counts())

    def _counts(self) -> dict[str, int]:
        """Every counter, the earlier parts' counts included."""
        publisher, link, inbox = self._delivery.publisher, self._link, self._inbox
        now = {
            "scans": self._controller.scans_seen, "checkins": self._delivery.checkins_recorded,
            "visits_refused": self._delivery.visits_refused, "scans_lost": inbox.dropped_scans,
            "published": publisher.published, "delivered": publisher.delivered,
            "backend_refused": publisher.backend_refused, "resent": publisher.resent,
            "refused": publisher.refused, "batches_unrouted": publisher.batches_unrouted,
            "connects": link.connects,
            "bad_messages": link.bad_messages,
            "replies_refused": self._controller.replies_refused,
            "codes_refused": self._controller.codes_refused,
            "events_dropped": inbox.dropped_messages, "link_drops": link.drops,
        }
        return {name: count + self._carried.counts.get(name, 0) for name, count in now.items()}

    def __call__(self) -> protocol.Health:
        """How this kiosk is doing now (the decode rate is since the previous call)."""
        outbox, publisher = self._delivery.outbox, self._delivery.publisher
        return protocol.Health(
            uptime_s=round(time.monotonic() - self._carried.started_at, 1),
            state=self._problems.state, problems=self._problems.texts(),
            outbox_depth=outbox.depth, outbox_oldest_s=round(outbox.oldest_age(), 1),
            unsent=publisher.unsent, unsent_oldest_s=self._age(publisher.first_unsent_row()),
            awaiting_backend=publisher.awaiting,
            awaiting_oldest_s=self._age(publisher.oldest_awaiting_row()),
            backend_silent_s=round(publisher.silent_for(time.monotonic()), 1),
            decode_fps=self._decode_rate.update(sum(s.frames_decoded for s in self._sources)),
            cpu_temp_c=cpu_temperature(), log_lines_held_back=logs.held_back(), **self._counts(),
            checkins_today=outbox.checkins_on(local_day(time.time())),
            last_scan_at=self._controller.last_scan_at,
        )

    def _age(self, row_id: int | None) -> float:
        """Seconds since row ``row_id`` was stored (0 for none)."""
        stored_at = None if row_id is None else self._delivery.outbox.stored_at(row_id)
        return 0.0 if stored_at is None else round(max(0.0, time.time() - stored_at), 1)
