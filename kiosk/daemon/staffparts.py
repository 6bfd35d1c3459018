"""What staff commands may touch of a running kiosk, and nothing more.

:class:`~kiosk.provisioning.commands.Commands` runs admitted commands against
this narrow adapter instead of the whole kiosk: a command can blink the light,
test the display, forget cached members, read the health report or ask for a
restart — it cannot reach the outbox, the link or the controller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PIL import Image

from drivers.display import DisplayWorker
from drivers.lights import Lights
from kiosk.counter.events import Cue
from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import Screen, StaffInfo
from kiosk.daemon.telemetry import local_address
from kiosk.mqtt import protocol
from kiosk.store.cache import MemberCache
from kiosk.ui.lights import cue
from kiosk.ui.presenter import Presenter
from kiosk.ui.stage import Stage

log = logging.getLogger(__name__)

IDENTIFY_S = 15.0
"""How long the staff screen stays up after an ``identify`` command."""


class StaffParts:
    """Implements :class:`kiosk.provisioning.commands.Parts` for one running kiosk."""

    def __init__(self, device_id: str, broker_host: str, lights: Lights | None,
                 display: DisplayWorker | None, presenter: Presenter, stage: Stage,
                 cache: MemberCache, known: dict[str, MemberStatus],
                 health: Callable[[], protocol.Health], online: Callable[[], bool],
                 config_version: Callable[[], int]) -> None:
        self._device_id = device_id
        self.broker_host = broker_host
        """The broker's name, for the staff screen's address (staff may move the kiosk)."""
        self._lights = lights
        self._display = display
        self._presenter = presenter
        self._stage = stage
        self._cache = cache
        self._known = known
        self._health = health
        self._online = online
        self._config_version = config_version
        self._identify_until = 0.0
        self._identify_address = ""  # looked up once per identify, not on every tick
        self.restart_requested: str | None = None

    def health(self) -> protocol.Health:
        """The kiosk's health report, as sent on ``tele/health``."""
        return self._health()

    def signal(self, meaning: Cue) -> bool:
        """Run a light pattern; False when no lights are fitted. ``identify`` also puts the
        staff screen (device id, address, broker, config version) up for a while."""
        if meaning is Cue.IDENTIFY:
            self._identify_until = time.monotonic() + IDENTIFY_S
            # The route (and a DNS lookup of the broker's name) once, not on every tick
            # while the staff screen is up: with the network down each could block the loop.
            self._identify_address = local_address(self.broker_host)
            self._stage.refresh(time.monotonic())
        if self._lights is None:
            return False
        cue(self._lights, meaning)
        return True

    def stand_in(self) -> Screen | None:
        """The staff screen, for a while after ``identify``."""
        if time.monotonic() >= self._identify_until:
            return None
        return StaffInfo(self._device_id, self._identify_address,
                         "connected" if self._online() else "offline", self._config_version(),
                         identify=True)

    def display_size(self) -> tuple[int, int] | None:
        """The display's size, or None when there is none."""
        return self._display.size if self._display else None

    def show_frame(self, image: Image.Image | None) -> None:
        """Show ``image`` (None: the customer's screen again)."""
        if image is not None and self._display:
            self._display.show(image)
        elif image is None:
            self._stage.again(time.monotonic())

    def set_contrast(self, level: int) -> bool:
        """The display's brightness, 0-255; False when there is no display."""
        if not self._display:
            return False
        self._presenter.set_brightness(level)
        return True

    def flush_member_cache(self) -> int:
        """Forget every cached member status (what the kiosk shows when offline)."""
        self._known.clear()
        return self._cache.clear()

    def request_restart(self, reason: str) -> None:
        """Leave the controller loop after this event; ``serve`` builds the kiosk again."""
        log.info("restarting: %s", reason)
        self.restart_requested = reason
