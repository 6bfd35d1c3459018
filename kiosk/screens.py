"""What the customer sees: screen models and their pure rendering to a 1-bit image.

Screens are plain values, so the controller can decide *what* to show without
touching a display, and tests can compare a rendered screen pixel for pixel.
Layouts target the common 128x64 OLED and scale their positions to other sizes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from kiosk.members import MemberStatus


class Sync(enum.Enum):
    """How far a check-in has got, in words a customer understands."""

    WAITING = "Checking in..."
    SYNCED = "Visit recorded!"
    PENDING = "Saved - will sync"
    ALREADY = "Already checked in"


@dataclass(frozen=True)
class Idle:
    """Waiting for a customer."""

    online: bool


@dataclass(frozen=True)
class Welcome:
    """A member checked in; ``status`` is the backend's answer or the last known one."""

    status: MemberStatus | None
    sync: Sync


@dataclass(frozen=True)
class UnknownCard:
    """The code is not a member code: nothing was recorded or sent."""


@dataclass(frozen=True)
class NotRecorded:
    """The kiosk could not store the visit (storage full or failing): the customer must know."""

    reason: str


Screen = Idle | Welcome | UnknownCard | NotRecorded


@cache
def _small() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


@cache
def _large() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=16)


def render(screen: Screen, size: tuple[int, int] = (128, 64)) -> Image.Image:
    """Draw ``screen`` as a mode "1" image of ``size`` (white on black, as OLEDs show)."""
    image = Image.new("1", size, 0)
    draw = ImageDraw.Draw(image)
    width, height = size
    match screen:
        case Idle(online=online):
            _centered(draw, width, 2, "LOYALTY", _small())
            _centered(draw, width, 20, "Scan your card", _large())
            if not online:
                _banner(draw, width, height, "offline: visits saved")
        case Welcome(status=status, sync=sync):
            _welcome(draw, width, height, status, sync)
        case UnknownCard():
            _centered(draw, width, 6, "Unknown card", _large())
            _centered(draw, width, 32, "Please show your", _small())
            _centered(draw, width, 44, "member QR code", _small())
        case NotRecorded(reason=reason):
            _centered(draw, width, 2, "Sorry!", _large())
            _centered(draw, width, 24, "Visit NOT recorded", _small())
            _centered(draw, width, 36, "please ask staff", _small())
            _banner(draw, width, height, reason[:24])
    return image


def _welcome(draw: ImageDraw.ImageDraw, width: int, height: int,
             status: MemberStatus | None, sync: Sync) -> None:
    name = status.display_name if status and status.display_name else ""
    greeting = _fit(draw, width, f"Hi {name}", _small(), "!") if name else "Welcome!"
    draw.text((0, 0), greeting, font=_small(), fill=1)
    if status is None:
        _centered(draw, width, 16, "Thank you", _large())
    else:
        draw.text((0, 12), f"{status.balance:,} pts", font=_large(), fill=1)
        line = f"{status.tier[:10]}  {status.points_to_next:,} to go"
        draw.text((0, 33), _fit(draw, width, line, _small()), font=_small(), fill=1)
        bar_top = 45
        draw.rectangle((0, bar_top, width - 1, bar_top + 4), outline=1, fill=0)
        filled = round((width - 3) * min(max(status.progress, 0.0), 1.0))
        if filled:
            draw.rectangle((1, bar_top + 1, filled, bar_top + 3), fill=1)
    if status and status.reward_unlocked and sync is Sync.SYNCED:
        _banner(draw, width, height, f"REWARD: {status.reward_unlocked}"[:21])
    else:
        _banner(draw, width, height, sync.value, inverted=False)


def _fit(draw: ImageDraw.ImageDraw, width: int, text: str,
         font: ImageFont.ImageFont | ImageFont.FreeTypeFont, suffix: str = "") -> str:
    """``text + suffix``, shortened until it fits ``width`` (names are not ours to choose)."""
    while text and draw.textlength(text + suffix, font=font) > width:
        text = text[:-1]
    return text + suffix


def _centered(draw: ImageDraw.ImageDraw, width: int, top: int, text: str,
              font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> None:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) // 2, top), text, font=font, fill=1)


def _banner(draw: ImageDraw.ImageDraw, width: int, height: int, text: str,
            inverted: bool = True) -> None:
    top = height - 12
    if inverted:
        draw.rectangle((0, top, width - 1, height - 1), fill=1)
    left, _, right, _ = draw.textbbox((0, 0), text, font=_small())
    draw.text(((width - (right - left)) // 2, top + 1), text, font=_small(),
              fill=0 if inverted else 1)
