"""Staff's side of the envelope: number, date and seal orders with one signing key."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from kiosk.mqtt.envelope import Order, seal
from kiosk.provisioning.guard import AHEAD_S
from kiosk.trust.signing import Signer

log = logging.getLogger(__name__)

COMMAND_TTL_S = 300.0
"""A command not carried out within five minutes (where the kiosk's clock is right) lapses."""
CONFIG_TTL_S = 30 * 86400.0
"""A desired config stays retained for kiosks that come back: it lasts a month."""


class Issuer:
    """Seals orders signed by ``signer``; ``seq`` grows with every order it issues.

    The sequence number starts from the wall clock in milliseconds, so two staff
    machines sharing a key, or one that lost its state, still issue numbers above
    the ones kiosks have seen; ``last_seq`` lets a caller persist it across runs.
    """

    def __init__(self, signer: Signer, last_seq: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.last_seq = last_seq
        self._clock = clock

    def order(self, kind: str, name: str, target: str, args: dict[str, Any],
              ttl_s: float, cmd_id: str | None = None) -> tuple[Order, bytes]:
        """A new order and its sealed envelope (``cmd_id``: a chosen id, e.g. a rollout's)."""
        now = self._clock()
        now_ms = int(now * 1000)
        if self.last_seq > now_ms + AHEAD_S * 1000:
            # Numbered while this machine's clock was wrong (or a bad number was stored):
            # kiosks refuse numbers that far ahead, so number from the clock again.
            log.warning("last order number %d is ahead of this machine's clock; numbering "
                        "from the clock again", self.last_seq)
            self.last_seq = 0
        self.last_seq = max(self.last_seq + 1, now_ms)
        order = Order(kind=kind, name=name, target=target, cmd_id=cmd_id or uuid.uuid4().hex,
                      seq=self.last_seq, expires_at=round(now + ttl_s, 3), args=args)
        return order, seal(order, self.signer)

    def command(self, target: str, name: str, args: dict[str, Any] | None = None,
                ttl_s: float = COMMAND_TTL_S, cmd_id: str | None = None) -> tuple[Order, bytes]:
        """A signed command for a kiosk, a site (``<site>/_all``) or the fleet."""
        return self.order("cmd", name, target, args or {}, ttl_s, cmd_id)

    def config(self, target: str, version: int, table: dict[str, Any],
               ttl_s: float = CONFIG_TTL_S, cmd_id: str | None = None) -> tuple[Order, bytes]:
        """A signed desired config (sections and keys to change) for one kiosk."""
        return self.order("config", "config", target, {"version": version, "config": table},
                          ttl_s, cmd_id)
