"""Which device nodes each configured backend needs, and whether they are there and usable.

For ``kiosk doctor``: it opens nothing (a running kiosk holds the devices), it
only looks for the nodes the real backends open and checks this user may use them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from drivers.factory import chosen
from drivers.specs import HardwareSpec


@dataclass(frozen=True)
class Presence:
    """One device's verdict, with what to do when it is not usable."""

    device: str
    ok: bool
    detail: str
    fix: str = ""


def _usable(nodes: list[Path], device: str, what: str, group: str, enable: str) -> Presence:
    if not nodes:
        return Presence(device, False, f"no {what}", enable)
    denied = [str(node) for node in nodes if not os.access(node, os.R_OK | os.W_OK)]
    if len(denied) == len(nodes):
        return Presence(device, False, f"{', '.join(denied)}: permission denied",
                        f"add the kiosk user to group {group} (tools/install.sh does), "
                        "then restart the kiosk")
    return Presence(device, True, ", ".join(str(node) for node in nodes))


def check(spec: HardwareSpec, dev: Path = Path("/dev")) -> list[Presence]:
    """A verdict per device, for the backends that would run (``KIOSK_HARDWARE`` included)."""
    spec = chosen(spec)
    found: list[Presence] = []
    camera, serial, display, lights = spec.camera, spec.serial, spec.display, spec.lights
    if camera.backend == "picamera2":  # libcamera: media controller, V4L2 nodes, DMA heaps
        found.append(_usable(sorted(dev.glob("media*")) + sorted(dev.glob("video*")), "camera",
                             "camera device (/dev/media*, /dev/video*)", "video",
                             "check the CSI ribbon (contacts towards the board on a Pi 4), "
                             "then: rpicam-hello --list-cameras"))
    if serial.backend == "pyserial":
        port = Path(serial.port)
        found.append(_usable([port] if port.exists() else [], "serial", f"serial port {port}",
                             "dialout", "plug the scanner in, or set serial.port (a udev rule "
                             "can give it a stable name: systemd/99-kiosk-scanner.rules)"))
    if display.backend == "luma":
        node = (dev / f"i2c-{display.i2c_port}" if display.interface == "i2c"
                else dev / f"spidev{display.spi_port}.{display.spi_device}")
        bus = display.interface.upper()
        found.append(_usable([node] if node.exists() else [], "display", f"{bus} bus {node}",
                             display.interface, f"enable {bus}: sudo raspi-config nonint "
                             f"do_{display.interface} 0, then reboot"))
    if lights.backend == "gpio":
        found.append(_usable(sorted(dev.glob("gpiochip*")), "lights", "GPIO chip (/dev/gpiochip*)",
                             "gpio", "this is not a Raspberry Pi, or the kernel has no GPIO "
                             "character device; set lights.backend = \"none\" if none are fitted"))
    for name, part in (("camera", camera), ("serial", serial), ("display", display),
                       ("lights", lights)):
        if part.backend in ("sim", "none"):
            found.append(Presence(name, True, "simulated" if part.backend == "sim"
                                  else "not fitted"))
    return found
