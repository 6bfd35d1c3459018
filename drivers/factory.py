"""Builds the hardware set from device specs: the one place that picks real or simulated.

Like gpiozero's ``GPIOZERO_PIN_FACTORY``, the environment variable
``KIOSK_HARDWARE=sim`` switches every device that is not ``none`` to its
simulated backend, whatever the config file says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from drivers.base import Hardware
from drivers.specs import (
    CameraSpec,
    DisplaySpec,
    HardwareSpec,
    LightsSpec,
    NfcSpec,
    SerialSpec,
    WedgeSpec,
)

if TYPE_CHECKING:
    from drivers.camera import FrameSource
    from drivers.sim import PtySerial, SimCamera, SimKeyboard, SimPn532

log = logging.getLogger(__name__)


Part = TypeVar("Part", CameraSpec, SerialSpec, DisplaySpec, LightsSpec, WedgeSpec, NfcSpec)


def _sim(part: Part) -> Part:
    return part if part.backend == "none" else replace(part, backend="sim")


def simulated(spec: HardwareSpec) -> HardwareSpec:
    """The same settings with every fitted device switched to its simulated backend."""
    return HardwareSpec(_sim(spec.camera), _sim(spec.serial), _sim(spec.display),
                        _sim(spec.lights), _sim(spec.keyboard), _sim(spec.nfc))


def chosen(spec: HardwareSpec) -> HardwareSpec:
    """The backends that will run: the config's, or all simulated under ``KIOSK_HARDWARE=sim``."""
    return simulated(spec) if os.environ.get("KIOSK_HARDWARE", "").lower() == "sim" else spec


@dataclass
class SimHandles:
    """The simulated devices, for whoever plays the customer (demo, tests)."""

    camera: SimCamera | None = None
    serial: PtySerial | None = None
    display: Any = None  # luma dummy device that also saves PNGs (drivers.sim)
    pin_factory: Any = None  # gpiozero MockFactory
    keyboard: SimKeyboard | None = None
    nfc: SimPn532 | None = None


def make_hardware(spec: HardwareSpec) -> tuple[Hardware, SimHandles]:
    """Open every configured device.

    A device that cannot be opened is left out and named in ``hardware.problems``:
    a kiosk whose display died still takes check-ins on its camera, and says so.
    """
    spec = chosen(spec)
    hardware = Hardware(sources=[], display=None, lights=None)
    handles = SimHandles()
    steps: list[tuple[str, str, Callable[[], None]]] = [
        ("camera", spec.camera.backend, lambda: _add_camera(spec.camera, hardware, handles)),
        ("serial", spec.serial.backend, lambda: _add_serial(spec.serial, hardware, handles)),
        ("display", spec.display.backend, lambda: _add_display(spec.display, hardware, handles)),
        ("lights", spec.lights.backend, lambda: _add_lights(spec.lights, hardware, handles)),
        ("keyboard", spec.keyboard.backend,
         lambda: _add_keyboard(spec.keyboard, hardware, handles)),
        ("nfc", spec.nfc.backend, lambda: _add_nfc(spec.nfc, hardware, handles)),
    ]
    for name, backend, add in steps:
        try:
            add()
        except Exception as exc:  # each library has its own errors; all mean "not there"
            hardware.problems.append(f"{name}: {exc}")
            log.error("%s unavailable (%s backend): %s", name, backend, exc)
    return hardware, handles


# Each backend is imported only when configured: a kiosk without a camera does not
# need libzbar, and importing the factory stays cheap.


def _add_camera(spec: CameraSpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    from drivers.camera import CameraSource, Picamera2Frames

    frames: FrameSource
    if spec.backend == "sim":
        from drivers.sim import SimCamera

        frames = handles.camera = SimCamera(spec)
    else:
        frames = Picamera2Frames(spec)
    hardware.sources.append(CameraSource(frames, spec))


def _add_serial(spec: SerialSpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    from drivers.serial_reader import SerialCodeSource

    if spec.backend == "sim":
        from drivers.sim import PtySerial

        pty = handles.serial = PtySerial(spec)
        hardware.closers.append(pty.close)
        hardware.sources.append(SerialCodeSource(spec, port=pty.device,
                                                 on_open=pty.reader_open.set))
    else:
        hardware.sources.append(SerialCodeSource(spec))


def _add_display(spec: DisplaySpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    if spec.backend == "sim":
        from drivers.sim import make_dummy_display

        display = hardware.display = handles.display = make_dummy_display(spec)
        hardware.closers.append(display.release)
        return
    from drivers.display import LumaPanel

    panel = hardware.display = LumaPanel(spec)
    hardware.closers.append(panel.cleanup)  # luma: blank the panel, release the bus
    panel.open()  # a missing panel is reported now, and the display thread keeps retrying


def _add_lights(spec: LightsSpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    from drivers.lights import Lights

    factory = None
    if spec.backend == "sim":
        from drivers.sim import make_mock_pin_factory

        factory = handles.pin_factory = make_mock_pin_factory()
    lights = hardware.lights = Lights(spec, pin_factory=factory)
    hardware.closers.append(lights.close)
    if spec.backend == "sim" and spec.sim_state:
        from drivers.sim import LightsStateFile

        hardware.closers.append(LightsStateFile(lights, spec.sim_state).stop)


def _add_keyboard(spec: WedgeSpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    from drivers.wedge import WedgeCodeSource

    if spec.backend == "sim":
        from drivers.sim import SimKeyboard

        keyboard = handles.keyboard = SimKeyboard()
        hardware.closers.append(keyboard.release)
        hardware.sources.append(WedgeCodeSource(spec, opener=keyboard.open))
    else:
        hardware.sources.append(WedgeCodeSource(spec))


def _add_nfc(spec: NfcSpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    from drivers.nfc import NfcCodeSource

    if spec.backend == "sim":
        from drivers.sim import SimPn532

        reader = handles.nfc = SimPn532()
        hardware.sources.append(NfcCodeSource(spec, opener=reader.open))
    else:
        hardware.sources.append(NfcCodeSource(spec))
