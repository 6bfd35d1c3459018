"""The commands staff can run on a kiosk, once its guard has admitted them.

Each command takes its ``args`` (already bounded by the envelope) and the parts
of the running kiosk it needs, and returns the ``data`` of its result or raises
:class:`CommandError`. All run on the controller thread, which owns those parts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from PIL import Image

from kiosk import KioskError
from kiosk.counter.events import Cue
from kiosk.mqtt import protocol

DISPLAY_TEST_S = (1.0, 30.0)


class CommandError(KioskError, ValueError):
    """A command that was admitted but cannot be carried out; the text says why."""


class Parts(Protocol):
    """What commands may touch of a running kiosk (``kiosk.daemon.staffparts.StaffParts``)."""

    def health(self) -> protocol.Health:
        """The kiosk's health report, as sent on ``tele/health``."""

    def signal(self, meaning: Cue) -> bool:
        """Run a light pattern; False when no lights are fitted."""

    def display_size(self) -> tuple[int, int] | None:
        """The display's size in pixels, or None when no display is fitted."""

    def show_frame(self, image: Image.Image | None) -> None:
        """Put ``image`` on the display (None: the customer's screen again)."""

    def set_contrast(self, level: int) -> bool:
        """Set the display's brightness; False when no display is fitted."""

    def flush_member_cache(self) -> int:
        """Forget every cached member status; how many there were."""

    def request_restart(self, reason: str) -> None:
        """Stop after this event and start again with the config on disk."""


class Commands:
    """Runs one admitted command; remembers when a display test must end."""

    def __init__(self, parts: Parts, config_version: Callable[[], int]) -> None:
        self._parts = parts
        self._config_version = config_version
        self._test_until: float | None = None
        self._table: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": self._ping, "status": self._status, "identify": self._identify,
            "display-test": self._display_test, "set-brightness": self._set_brightness,
            "flush-cache": self._flush_cache, "restart": self._restart,
        }

    def add(self, name: str, command: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Another command (``update``, from :mod:`kiosk.provisioning.update`)."""
        self._table[name] = command

    @property
    def names(self) -> list[str]:
        """Every command this kiosk knows."""
        return list(self._table)

    def run(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Carry out command ``name``; its result data, or :class:`CommandError`."""
        command = self._table.get(name)
        if command is None:
            raise CommandError(f"unknown command {name!r} (known: {', '.join(self._table)})")
        return command(args)

    def tick(self, now: float) -> None:
        """Put the customer's screen back when a display test is over."""
        if self._test_until is not None and now >= self._test_until:
            self._test_until = None
            self._parts.show_frame(None)

    def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_args(args)
        return {"pong": True, "wall_time": round(time.time(), 3)}

    def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_args(args)
        return {**asdict(self._parts.health()), "config_version": self._config_version()}

    def _identify(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_args(args)
        if not self._parts.signal(Cue.IDENTIFY):
            raise CommandError("no lights fitted")
        return {}

    def _display_test(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = _number(args, "seconds", 5.0, *DISPLAY_TEST_S)
        size = self._parts.display_size()
        if size is None:
            raise CommandError("no display fitted")
        self._parts.show_frame(_test_pattern(size))
        self._test_until = time.monotonic() + seconds
        return {"width": size[0], "height": size[1], "seconds": seconds}

    def _set_brightness(self, args: dict[str, Any]) -> dict[str, Any]:
        level = int(_number(args, "level", None, 0, 255))
        if not self._parts.set_contrast(level):
            raise CommandError("no display fitted")
        return {"level": level, "until": "restart"}

    def _flush_cache(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_args(args)
        return {"forgotten": self._parts.flush_member_cache()}

    def _restart(self, args: dict[str, Any]) -> dict[str, Any]:
        _no_args(args)
        self._parts.request_restart("restart command")
        return {"restarting": True}


def _test_pattern(size: tuple[int, int]) -> Image.Image:
    """Every pixel lit but a one-pixel border and a centre cross: dead pixels and edges show."""
    width, height = size
    image = Image.new("1", size, 1)
    for x in range(width):
        image.putpixel((x, 0), 0)
        image.putpixel((x, height - 1), 0)
        image.putpixel((x, height // 2), 0)
    for y in range(height):
        image.putpixel((0, y), 0)
        image.putpixel((width - 1, y), 0)
        image.putpixel((width // 2, y), 0)
    return image


def _no_args(args: dict[str, Any]) -> None:
    if args:
        raise CommandError(f"takes no arguments, got {', '.join(sorted(args))[:80]}")


def _number(args: dict[str, Any], name: str, default: float | None,
            low: float, high: float) -> float:
    unknown = set(args) - {name}
    if unknown:
        raise CommandError(f"unknown argument {sorted(unknown)[0][:40]!r}")
    value = args.get(name, default)
    if value is None:
        raise CommandError(f"argument {name!r} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise CommandError(f"argument {name!r}: expected a number from {low:g} to {high:g}")
    return float(value)
