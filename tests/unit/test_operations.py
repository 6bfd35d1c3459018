"""How the kiosk runs in a shop: systemd, degraded hardware, the simulated-hardware switch,
and the demo a newcomer runs first."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from drivers.factory import make_hardware
from drivers.specs import CameraSpec, DisplaySpec, LightsSpec, SerialSpec
from kiosk.config import Config
from kiosk.sim.demo import _Demo
from kiosk.sim.termview import FRAME_ROWS, draw, frame_lines
from tests.terminal import Terminal


def test_kiosk_hardware_sim_switches_every_fitted_device_to_simulation(tmp_path, monkeypatch):
    monkeypatch.setenv("KIOSK_HARDWARE", "sim")
    config = Config(
        camera=CameraSpec(spool_dir=str(tmp_path / "spool")),  # picamera2 in the file
        serial=SerialSpec(backend="pyserial", sim_link=str(tmp_path / "serial")),
        display=DisplaySpec(sim_png=str(tmp_path / "oled.png")),
        lights=LightsSpec(backend="none"),
    )
    hardware, sim = make_hardware(config.hardware)
    try:
        assert hardware.problems == []
        assert sim.camera is not None and sim.serial is not None and sim.display is not None
        assert hardware.lights is None  # "none" stays none
        assert (tmp_path / "serial").is_symlink()
    finally:
        hardware.close()


def test_the_terminal_shows_the_display_pixel_for_pixel_with_the_leds():
    image = Image.new("1", (4, 4), 0)
    for xy in [(0, 0), (1, 1), (0, 3), (2, 0), (3, 2)]:
        image.putpixel(xy, 1)
    # 2x4 pixels a character: dots 1, 5 and 7 on the left cell, dots 1 and 6 on the right
    assert frame_lines(image) == [chr(0x2800 + 0x01 + 0x10 + 0x40) + chr(0x2800 + 0x01 + 0x20)]
    drawn = draw(image, {"pattern": "ok", "led": {"green": 1.0, "red": 0.0}, "buzzer": "E5"})
    assert drawn.splitlines()[1].endswith(" ok")


@pytest.mark.parametrize("size", [(128, 64), (256, 64), (128, 128)])
def test_every_display_fits_an_80x24_terminal_with_the_demos_news(size):
    state = {"pattern": "identify-everything", "led": {"red": 1.0, "green": 1.0, "blue": 1.0},
             "buzzer": "A5"}
    drawn = draw(Image.new("RGB", size, (255, 255, 255)), state).splitlines()
    assert max(len(line) for line in drawn) < 80
    assert len(drawn) <= FRAME_ROWS == 18


def test_the_demo_redraws_in_place_in_80x24_and_erases_what_it_overwrites(tmp_path):
    terminal = Terminal()
    demo = _Demo(tmp_path, quiet=False, out=terminal)
    lit = {"pattern": "celebrate", "led": {"red": 1.0, "green": 1.0}, "buzzer": "C6"}
    demo._frame_text = draw(Image.new("1", (128, 64), 1), lit)
    for number in range(1, 20):
        demo.say(f"customer {number}: holds up the QR card LOY-ALICE01 " + "x" * 80)
    demo._frame_text = draw(Image.new("1", (128, 64), 0), {})  # dark, and no lights
    demo.say("short")
    screen = terminal.screen()
    assert screen[0] == "\u250c" + "\u2500" * 64 + "\u2510"  # the top border stays on top
    assert all(line == "\u2502" + " " * 64 + "\u2502" for line in screen[1:17])  # no "celebrate"
    news = [f"customer {n}: holds up the QR card LOY-ALICE01 " + "x" * 80 for n in (16, 17, 18, 19)]
    assert screen[18:23] == [*(line[:79] for line in news), "short"]  # cut, not wrapped
    assert screen[23] == ""


def test_cpu_temperature_is_read_from_the_thermal_zone(tmp_path):
    from kiosk.daemon.telemetry import cpu_temperature

    zone = tmp_path / "temp"
    zone.write_text("48250\n")
    assert cpu_temperature(zone) == 48.2
    assert cpu_temperature(tmp_path / "missing") is None


def test_the_daemon_caps_glibc_malloc_arenas_and_threads_still_allocate():
    program = ("import threading; from kiosk.ops.memory import limit_malloc_arenas\n"
               "ok = limit_malloc_arenas(2)\n"
               "blocks = []\n"
               "def work():\n"
               "    blocks.extend(bytearray(300_000) for _ in range(20))\n"
               "threads = [threading.Thread(target=work) for _ in range(8)]\n"
               "[t.start() for t in threads]; [t.join() for t in threads]\n"
               "print(ok, len(blocks))\n")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "160"]
