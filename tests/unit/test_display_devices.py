"""Every luma.oled panel the kiosk names, driven for real through a capturing bus.

luma's device classes assert the frame's mode and size and encode it for their
controller chip; the bytes they hand to the bus are what a panel would show. A
kiosk frame of the wrong mode (the old mode "1" frames on greyscale and colour
panels) or size fails here, in CI, instead of on a shop counter.
"""

from __future__ import annotations

import os

import pytest
from PIL import Image, ImageDraw

from drivers import DriverError
from drivers.display import DisplayWorker, LumaPanel, make_luma_device
from drivers.sim import CaptureBus
from drivers.specs import DISPLAY_DRIVERS, DisplaySpec
from kiosk.testing.harness import wait_for
from tests.devices import UnpluggedBus

# A size each class supports (luma.oled 3.16.0: the ``settings`` tables of the mono
# classes and ``_supported_dimensions`` of the others).
PANEL_SIZES = {
    "ch1115": (128, 64), "sh1106": (128, 64), "sh1107": (64, 128), "ssd1305": (128, 32),
    "ssd1306": (128, 64), "ssd1309": (128, 64), "ssd1315": (128, 64), "ssd1316": (128, 32),
    "ssd1322": (256, 64), "ssd1322_nhd": (128, 64), "ssd1325": (128, 64),
    "ssd1327": (128, 128), "ssd1362": (256, 64), "ssd1363": (256, 128),
    "ssd1331": (96, 64), "ssd1351": (128, 128),
}


def test_every_named_driver_has_a_size_under_test():
    assert set(PANEL_SIZES) == set(DISPLAY_DRIVERS)


def _frame(size: tuple[int, int], mode: str) -> Image.Image:
    """A kiosk-like frame: a border, text and a filled bar, in ``mode``."""
    image = Image.new(mode, size, 0)
    draw = ImageDraw.Draw(image)
    lit = 1 if mode == "1" else (255, 255, 255)
    draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=lit)
    draw.text((3, 3), "Hi Ayşe 1,230", fill=lit)
    draw.rectangle((3, size[1] - 8, size[0] // 2, size[1] - 4), fill=lit)
    return image


def _lit_on_panel(driver: str, data: bytes) -> int:
    """How many pixels the panel lights from ``data``, in its controller's pixel format."""
    kind = DISPLAY_DRIVERS[driver]
    if driver == "ssd1322_nhd":  # two SEG lines per pixel: one byte each
        return len(data) - data.count(0)
    if kind == "mono":  # one bit per pixel, in pages of 8 rows
        return sum(bin(byte).count("1") for byte in data)
    if kind == "greyscale":  # 4-bit grey, two pixels per byte
        return sum((byte >> 4 != 0) + (byte & 0x0F != 0) for byte in data)
    return sum(1 for i in range(0, len(data), 2) if data[i] or data[i + 1])  # RGB565


def _pixels(bus: CaptureBus) -> bytes:
    """The pixel data of what was sent (ssd1322 sends window addresses as 2-byte data)."""
    return b"".join(block for block in bus.frames if len(block) > 2)


def _panel(driver: str, rotate: int = 0) -> tuple[LumaPanel, CaptureBus]:
    width, height = PANEL_SIZES[driver]
    bus = CaptureBus()
    panel = LumaPanel(DisplaySpec(driver=driver, width=width, height=height, rotate=rotate),
                      interface=bus)
    panel.open()
    bus.reset()  # keep only what one frame sends
    return panel, bus


@pytest.mark.parametrize("rotate", [0, 1])
@pytest.mark.parametrize("driver", sorted(DISPLAY_DRIVERS))
def test_panel_takes_a_kiosk_frame_and_sends_its_pixels(driver, rotate):
    panel, bus = _panel(driver, rotate)
    frame = _frame(panel.size, "1")  # mode "1", as the mono layouts render it
    worker = DisplayWorker(panel)
    worker.start()
    worker.show(frame)
    wait_for(lambda: worker.frames_shown == 1 or worker.fault, 5, "the frame on the panel")
    worker.stop()
    assert worker.fault is None and worker.frames_shown == 1
    lit = sum(bin(byte).count("1") for byte in frame.tobytes())  # mode "1": 8 pixels a byte
    assert _lit_on_panel(driver, _pixels(bus)) == lit
    width, height = PANEL_SIZES[driver]
    bits = {"mono": 1, "greyscale": 4, "colour": 16}[DISPLAY_DRIVERS[driver]]
    bits = 8 if driver == "ssd1322_nhd" else bits
    assert 0 < len(_pixels(bus)) <= width * height * bits // 8


def test_ssd1306_bytes_decode_back_to_the_frame():
    panel, bus = _panel("ssd1306")
    frame = _frame(panel.size, "1")
    panel.display(frame)
    data = b"".join(bus.frames)
    assert len(data) == 128 * 64 // 8
    decoded = Image.new("1", (128, 64), 0)
    for page in range(8):
        for x in range(128):
            byte = data[page * 128 + x]
            for bit in range(8):
                if byte >> bit & 1:
                    decoded.putpixel((x, page * 8 + bit), 1)
    assert decoded.tobytes() == frame.tobytes()


@pytest.mark.parametrize("driver", ["ssd1322", "ssd1351"])
def test_rgb_frames_keep_their_grey_and_colour(driver):
    panel, bus = _panel(driver)
    frame = Image.new("RGB", panel.size, (0, 0, 0))
    ImageDraw.Draw(frame).rectangle((0, 0, 15, 7), fill=(128, 128, 128))
    panel.display(frame)
    data = _pixels(bus)
    # luma sends only the changed 16x8 window (diff_to_previous framebuffer)
    if driver == "ssd1322":  # 4-bit grey: (128 * (306 + 601 + 117)) >> 14 = 8 per pixel
        assert data == bytes([0x88]) * (16 * 8 // 2)
    else:  # RGB565 of (128, 128, 128)
        assert data == bytes([0x84, 0x10]) * (16 * 8)


def test_a_size_the_panel_cannot_show_is_a_clear_error():
    spec = DisplaySpec(driver="ssd1351", width=128, height=64)
    with pytest.raises(DriverError, match="ssd1351 does not support 128x64"):
        make_luma_device(spec, CaptureBus())


def test_contrast_is_sent_to_the_panel():
    bus = CaptureBus()
    LumaPanel(DisplaySpec(contrast=40), interface=bus).open()
    assert bus.commands[-1] == (0x81, 40)  # ssd1306 SETCONTRAST


def test_a_failing_panel_is_reported_and_retried_until_it_shows_the_frame():
    bus = UnpluggedBus()
    panel = LumaPanel(DisplaySpec(), interface=bus)
    worker = DisplayWorker(panel, first_retry_s=0.05)
    reports: list[tuple[str, str]] = []  # what the kiosk hears, as from any device
    worker.start(lambda device, reason: reports.append((device, reason)))
    try:
        frame = _frame(panel.size, "1")
        worker.show(frame)
        wait_for(lambda: worker.failures >= 2, 5, "two failed attempts")
        assert worker.fault is not None and "Remote I/O error" in worker.fault
        assert worker.frames_shown == 0
        assert reports == [("display", worker.fault.removeprefix("display: "))]  # once
        bus.unplugged = False  # plugged back in: the panel is reopened and gets the frame
        # Retries back off up to 30 s: on a loaded machine more than two may have failed.
        wait_for(lambda: worker.frames_shown == 1, 40, "the frame after the panel came back")
        assert worker.fault is None
        assert reports[-1] == ("display", "") and len(reports) == 2  # and its recovery, once
        assert any(cmd[:1] == (0xAE,) for cmd in bus.commands)  # re-initialised: DISPLAYOFF
    finally:
        worker.stop()


def test_a_panel_that_fails_to_start_leaves_no_bus_open_however_often_it_is_retried(
        tmp_path, monkeypatch):
    """luma.core 2.6.0's real ``i2c`` interface opens the bus (smbus2) before the panel's
    constructor talks to it; when that fails, the bus must be closed, or every retry of the
    display thread keeps one more descriptor open (about 120 an hour at the 30 s cap)."""
    import smbus2

    bus = tmp_path / "i2c-1"  # stands for /dev/i2c-1: it opens, but no panel answers
    bus.write_bytes(b"")
    real_open = smbus2.SMBus.open
    monkeypatch.setattr(smbus2.SMBus, "open", lambda self, _port: real_open(self, str(bus)))
    monkeypatch.setattr(smbus2.SMBus, "_get_funcs", lambda self: 0)  # a file has no I2C_FUNCS
    panel = LumaPanel(DisplaySpec(backend="luma", interface="i2c", driver="ssd1306"))

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = descriptors()
    for _ in range(50):
        with pytest.raises(OSError):  # I2C_SLAVE on a plain file: the panel never answers
            panel.open()
    assert descriptors() == before
