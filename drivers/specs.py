"""Settings for each device, as plain frozen dataclasses.

The application's config loader builds these straight from the TOML file, so a
driver never sees a dict and every value has been checked once, at start-up.
``__post_init__`` raises ``ValueError`` with a message the loader shows next to
the key that was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


def _one_of(value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}")


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError("expected a number greater than 0")


@dataclass(frozen=True)
class CameraSpec:
    """The QR camera. ``sim`` reads images from ``spool_dir`` instead of a sensor."""

    backend: str = "picamera2"
    width: int = 640
    height: int = 480
    fps: float = 10.0
    cooldown_s: float = 5.0
    spool_dir: str = "/run/kiosk/camera"
    hold_s: float = 1.0

    def __post_init__(self) -> None:
        _one_of(self.backend, ("picamera2", "sim", "none"))
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError("expected width and height from 16 to 4096 pixels")
        _positive(self.fps)
        _positive(self.hold_s)
        if self.cooldown_s < 0:
            raise ValueError("expected a cooldown of 0 s or more")


@dataclass(frozen=True)
class SerialSpec:
    """A line-oriented code reader. ``sim`` opens a pseudo-terminal linked at ``sim_link``."""

    backend: str = "none"
    port: str = "/dev/ttyACM0"
    baud: int = 9600
    terminator: str = "\r"
    cooldown_s: float = 5.0
    sim_link: str = "/run/kiosk/serial"

    def __post_init__(self) -> None:
        _one_of(self.backend, ("pyserial", "sim", "none"))
        if self.baud not in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200):
            raise ValueError("expected a standard baud rate (1200 ... 115200)")
        if not self.terminator or len(self.terminator.encode()) > 2:
            raise ValueError('expected a terminator of one or two characters, e.g. "\\r"')
        if self.cooldown_s < 0:
            raise ValueError("expected a cooldown of 0 s or more")


@dataclass(frozen=True)
class DisplaySpec:
    """The OLED. ``sim`` is luma's dummy device, saving each frame to ``sim_png``."""

    backend: str = "luma"
    driver: str = "ssd1306"
    interface: str = "i2c"
    i2c_port: int = 1
    i2c_address: int = 0x3C
    spi_port: int = 0
    spi_device: int = 0
    gpio_dc: int = 24
    gpio_rst: int = 25
    width: int = 128
    height: int = 64
    rotate: int = 0
    sim_png: str = "/run/kiosk/display.png"

    def __post_init__(self) -> None:
        _one_of(self.backend, ("luma", "sim", "none"))
        _one_of(self.driver, ("ssd1306", "ssd1309", "sh1106", "sh1107", "ssd1322", "ssd1325",
                              "ssd1327", "ssd1331", "ssd1351"))
        _one_of(self.interface, ("i2c", "spi"))
        if not 0x03 <= self.i2c_address <= 0x77:
            raise ValueError("expected a 7-bit I2C address from 0x03 to 0x77")
        if self.rotate not in (0, 1, 2, 3):
            raise ValueError("expected rotate 0, 1, 2 or 3 (quarter turns)")
        if not (32 <= self.width <= 512 and 16 <= self.height <= 256):
            raise ValueError("expected a display from 32x16 to 512x256")


@dataclass(frozen=True)
class LightsSpec:
    """Status LEDs and an optional buzzer on BCM GPIO numbers (0 = not fitted)."""

    backend: str = "gpio"
    green_pin: int = 17
    red_pin: int = 27
    buzzer_pin: int = 0

    def __post_init__(self) -> None:
        _one_of(self.backend, ("gpio", "sim", "none"))
        pins = [p for p in (self.green_pin, self.red_pin, self.buzzer_pin) if p]
        if any(not 2 <= p <= 27 for p in pins):
            raise ValueError("expected BCM GPIO numbers from 2 to 27 (0 = not fitted)")
        if len(set(pins)) != len(pins):
            raise ValueError("expected a different GPIO pin for each light")
