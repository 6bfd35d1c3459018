"""Builds the hardware set from device specs: the one place that picks real or simulated.

Like gpiozero's ``GPIOZERO_PIN_FACTORY``, the environment variable
``KIOSK_HARDWARE=sim`` switches every device that is not ``none`` to its
simulated backend, whatever the config file says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from drivers.base import Hardware
from drivers.camera import CameraSource, Picamera2Frames
from drivers.display import make_luma_device
from drivers.serial_reader import SerialCodeSource
from drivers.specs import CameraSpec, DisplaySpec, LightsSpec, SerialSpec


@dataclass(frozen=True)
class HardwareSpec:
    """Every device's settings, as the application's config holds them."""

    camera: CameraSpec
    serial: SerialSpec
    display: DisplaySpec
    lights: LightsSpec


def simulated(spec: HardwareSpec) -> HardwareSpec:
    """The same settings with every fitted device switched to its simulated backend."""

    def sim(part):  # type: ignore[no-untyped-def]
        return part if part.backend == "none" else replace(part, backend="sim")

    return HardwareSpec(sim(spec.camera), sim(spec.serial), sim(spec.display), sim(spec.lights))


@dataclass
class SimHandles:
    """The simulated devices, for whoever plays the customer (demo, tests)."""

    camera: object | None = None  # drivers.sim.SimCamera
    serial: object | None = None  # drivers.sim.PtySerial
    display: object | None = None  # the PngDummy luma device
    pin_factory: object | None = None  # gpiozero MockFactory


def make_hardware(spec: HardwareSpec) -> tuple[Hardware, SimHandles]:
    """Open every configured device; a failure closes what was already opened."""
    if os.environ.get("KIOSK_HARDWARE", "").lower() == "sim":
        spec = simulated(spec)
    hardware = Hardware(sources=[], display=None, lights=None)
    handles = SimHandles()
    try:
        _add_camera(spec.camera, hardware, handles)
        _add_serial(spec.serial, hardware, handles)
        _add_display(spec.display, hardware, handles)
        _add_lights(spec.lights, hardware, handles)
    except BaseException:
        hardware.close()
        raise
    return hardware, handles


def _add_camera(spec: CameraSpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    if spec.backend == "sim":
        from drivers.sim import SimCamera

        frames = handles.camera = SimCamera(spec)
    else:
        frames = Picamera2Frames(spec)
    hardware.sources.append(CameraSource(frames, spec))


def _add_serial(spec: SerialSpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    port = None
    if spec.backend == "sim":
        from drivers.sim import PtySerial

        pty = handles.serial = PtySerial(spec)
        hardware.closers.append(pty.close)
        port = pty.device
    hardware.sources.append(SerialCodeSource(spec, port=port))


def _add_display(spec: DisplaySpec, hardware: Hardware, handles: SimHandles) -> None:
    if spec.backend == "none":
        return
    if spec.backend == "sim":
        from drivers.sim import make_dummy_display

        hardware.display = handles.display = make_dummy_display(
            spec.width, spec.height, spec.sim_png)
    else:
        hardware.display = make_luma_device(spec)
        hardware.closers.append(hardware.display.cleanup)  # type: ignore[attr-defined]


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
