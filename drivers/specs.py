"""Settings for each device, as plain frozen dataclasses.

The application's config loader builds these straight from the TOML file, so a
driver never sees a dict and every value has been checked once, at start-up.
``__post_init__`` raises ``ValueError("key: expected ...")``; the loader puts
the file and section in front, so the user reads one line naming what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")


def _require(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ValueError(f"{key}: expected {expected}")


DEFAULT_ZONE = (0.2, 0.1, 0.8, 0.9)
"""Where a customer holds a card up to a counter camera (left, top, right, bottom as shares of
the frame): the middle of the view, leaving out its sides (an aisle, a door, the queue) and
the strip at the bottom and top."""


@dataclass(frozen=True)
class CameraSpec:
    """The QR camera. ``sim`` reads images from ``spool_dir`` instead of a sensor."""

    backend: str = "picamera2"
    width: int = 640
    height: int = 480
    fps: float = 15.0
    idle_fps: float = 5.0
    idle_after_s: float = 10.0
    motion_threshold: float = 0.004
    zone: str = ""
    roi: str = ""
    decoder: str = "auto"
    try_downscale: bool = False
    cooldown_s: float = 5.0
    spool_dir: str = "/run/kiosk/camera"
    hold_s: float = 1.0

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, ("picamera2", "sim", "none"))
        _one_of("decoder", self.decoder, ("auto", "zxing", "pyzbar"))
        _require(16 <= self.width <= 4096, "width", "16 to 4096 pixels")
        _require(16 <= self.height <= 4096, "height", "16 to 4096 pixels")
        _require(0 < self.fps <= 120, "fps", "a frame rate above 0 and up to 120")
        _require(0 < self.idle_fps <= 120, "idle_fps", "a frame rate above 0 and up to 120")
        _require(self.idle_after_s > 0, "idle_after_s", "a time above 0 s")
        _require(0 <= self.motion_threshold < 1, "motion_threshold",
                 "a share of the frame from 0 to below 1, e.g. 0.004")
        _require(self.hold_s > 0, "hold_s", "a time above 0 s")
        _require(self.cooldown_s >= 0, "cooldown_s", "a time of 0 s or more")
        _ = self.region  # checks roi
        _ = self.card_zone  # checks zone

    @property
    def region(self) -> tuple[int, int, int, int] | None:
        """The region of interest ``(x, y, width, height)`` in lores pixels; None: all of it."""
        if not self.roi:
            return None
        return self._rectangle("roi", self.roi)

    @property
    def card_zone(self) -> tuple[int, int, int, int]:
        """Where customers hold their cards ``(x, y, width, height)`` in lores pixels: the
        motion gate looks only there. Default: the middle of the view (``DEFAULT_ZONE``)."""
        if self.zone:
            return self._rectangle("zone", self.zone)
        left, top, right, bottom = DEFAULT_ZONE
        return (round(left * self.width), round(top * self.height),
                round((right - left) * self.width), round((bottom - top) * self.height))

    def _rectangle(self, name: str, text: str) -> tuple[int, int, int, int]:
        expected = '"x,y,width,height" in pixels inside the frame, e.g. "160,120,320,240"'
        try:
            x, y, width, height = (int(part) for part in text.split(","))
        except ValueError:
            raise ValueError(f"{name}: expected {expected}") from None
        _require(x >= 0 and y >= 0 and width >= 16 and height >= 16
                 and x + width <= self.width and y + height <= self.height, name, expected)
        return x, y, width, height


@dataclass(frozen=True)
class SerialSpec:
    """A serial code reader. ``sim`` opens a pseudo-terminal linked at ``sim_link``."""

    backend: str = "none"
    port: str = "/dev/ttyACM0"
    baud: int = 9600
    framing: str = "lines"
    cooldown_s: float = 5.0
    sim_link: str = "/run/kiosk/serial"

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, ("pyserial", "sim", "none"))
        _require(self.baud in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200),
                 "baud", "a standard baud rate (1200 ... 115200)")
        _one_of("framing", self.framing, ("lines", "stx-etx"))
        _require(self.cooldown_s >= 0, "cooldown_s", "a time of 0 s or more")


@dataclass(frozen=True)
class WedgeSpec:
    """A keyboard-wedge reader (a USB scanner that types), read through evdev and grabbed."""

    backend: str = "none"
    device: str = "/dev/input/by-id/usb-barcode-scanner-event-kbd"
    cooldown_s: float = 5.0

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, ("evdev", "sim", "none"))
        _require(bool(self.device), "device", "an input device path or a part of its name")
        _require(self.cooldown_s >= 0, "cooldown_s", "a time of 0 s or more")


@dataclass(frozen=True)
class NfcSpec:
    """A PN532 NFC reader on I2C or a UART."""

    backend: str = "none"
    interface: str = "i2c"
    port: str = "/dev/ttyS0"
    cooldown_s: float = 5.0

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, ("pn532", "sim", "none"))
        _one_of("interface", self.interface, ("i2c", "uart"))
        _require(self.cooldown_s >= 0, "cooldown_s", "a time of 0 s or more")


DISPLAY_DRIVERS: dict[str, str] = {
    # Checked against luma.oled 3.16.0, luma/oled/device/__init__.py, color.py, greyscale.py:
    # the monochrome classes call ``capabilities(..., mode="1")``; the greyscale ones take
    # ``mode`` (default "RGB") and the colour ones fix it to "RGB"; every ``display()``
    # asserts ``image.mode == self.mode`` and ``image.size == self.size``.
    "ch1115": "mono", "sh1106": "mono", "sh1107": "mono", "ssd1305": "mono",
    "ssd1306": "mono", "ssd1309": "mono", "ssd1315": "mono", "ssd1316": "mono",
    "ssd1322": "greyscale", "ssd1322_nhd": "greyscale", "ssd1325": "greyscale",
    "ssd1327": "greyscale", "ssd1362": "greyscale", "ssd1363": "greyscale",
    "ssd1331": "colour", "ssd1351": "colour",
}
"""Every luma.oled panel the kiosk drives, and what kind of pixels it has.

Left out: ``ws0010``/``winstar_weh`` (character displays on a parallel bus, not I2C/SPI)."""

SPI_SPEEDS_HZ = tuple(int(mhz * 1_000_000) for mhz in (0.5, 1, 2, 4, 8, 16, 20, 24, 28, 32, 36,
                                                        40, 44, 48, 50, 52))
"""The bus speeds luma.core 2.6.0 accepts (``interface/serial.py``, ``spi.__init__``)."""


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
    spi_speed_hz: int = 8_000_000
    gpio_dc: int = 24
    gpio_rst: int = 25
    width: int = 128
    height: int = 64
    rotate: int = 0
    contrast: int = 255
    sim_png: str = "/run/kiosk/display.png"

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, ("luma", "sim", "none"))
        _one_of("driver", self.driver, tuple(DISPLAY_DRIVERS))
        _one_of("interface", self.interface, ("i2c", "spi"))
        _require(0x03 <= self.i2c_address <= 0x77, "i2c_address", "a 7-bit address 0x03 to 0x77")
        _require(self.spi_speed_hz in SPI_SPEEDS_HZ, "spi_speed_hz",
                 "one of luma's SPI speeds, e.g. 8000000 (0.5 to 52 MHz)")
        _require(self.rotate in (0, 1, 2, 3), "rotate", "0, 1, 2 or 3 (quarter turns)")
        _require(32 <= self.width <= 512, "width", "32 to 512 pixels")
        _require(16 <= self.height <= 256, "height", "16 to 256 pixels")
        _require(0 <= self.contrast <= 255, "contrast", "0 to 255")

    @property
    def kind(self) -> str:
        """``mono``, ``greyscale`` or ``colour``: what the panel can show."""
        return DISPLAY_DRIVERS[self.driver]

    @property
    def mode(self) -> str:
        """The PIL image mode the panel's luma class asserts on every frame."""
        return "1" if self.kind == "mono" else "RGB"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as drawn: luma swaps them for a quarter turn (``mixin.capabilities``)."""
        return (self.width, self.height) if self.rotate % 2 == 0 else (self.height, self.width)


@dataclass(frozen=True)
class LightsSpec:
    """Status light and buzzer on BCM GPIO numbers (0 = not fitted).

    ``led = "discrete"``: a green and a red LED. ``led = "rgb"``: one RGB LED on
    ``red_pin``, ``green_pin`` and ``blue_pin``. ``buzzer = "active"`` beeps at
    its own pitch; ``"tonal"`` (a passive piezo) plays tunes on PWM.
    """

    backend: str = "gpio"
    led: str = "discrete"
    green_pin: int = 17
    red_pin: int = 27
    blue_pin: int = 0
    buzzer_pin: int = 0
    buzzer: str = "active"
    sim_state: str = "/run/kiosk/lights.json"

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, ("gpio", "sim", "none"))
        _one_of("led", self.led, ("discrete", "rgb"))
        _one_of("buzzer", self.buzzer, ("active", "tonal"))
        for key in ("green_pin", "red_pin", "blue_pin", "buzzer_pin"):
            pin = getattr(self, key)
            _require(pin == 0 or 2 <= pin <= 27, key, "a BCM GPIO number 2 to 27 (0 = not fitted)")
        _require(self.led == "discrete" or self.blue_pin != 0, "blue_pin",
                 "a GPIO pin for an RGB LED's blue leg")
        pins = [p for p in (self.green_pin, self.red_pin, self.blue_pin, self.buzzer_pin) if p]
        _require(len(set(pins)) == len(pins), "buzzer_pin", "a different GPIO pin for each light")


@dataclass(frozen=True)
class HardwareSpec:
    """Every device's settings, as the application's config holds them."""

    camera: CameraSpec
    serial: SerialSpec
    display: DisplaySpec
    lights: LightsSpec
    keyboard: WedgeSpec = field(default_factory=WedgeSpec)
    nfc: NfcSpec = field(default_factory=NfcSpec)
