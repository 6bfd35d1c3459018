"""The picamera2 backend against a stand-in for the one part that cannot exist here: the camera.

The stand-in keeps picamera2's interface and its lores YUV420 layout: a numpy
array of ``height * 3 / 2`` rows, each ``stride`` bytes wide, stride rounded up
past the image width, Y plane first.
"""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from drivers.camera import CameraSource, Picamera2Frames
from drivers.qr import make_decoder
from drivers.specs import CameraSpec
from kiosk.testing.cards import qr_card
from kiosk.testing.harness import wait_for

WIDTH, HEIGHT, STRIDE = 320, 240, 384


class FakeRequest:
    """A completed request holding one lores buffer, released back to the camera."""

    def __init__(self, camera: FakePicamera2, buffer: np.ndarray) -> None:
        self.camera = camera
        self.buffer = buffer
        self.released = False

    def release(self) -> None:
        assert not self.released, "released twice"
        self.released = True
        self.camera.held -= 1


class FakeMappedArray:
    """picamera2's ``MappedArray``: the buffer as a ``(h*3/2, stride)`` array, no copy."""

    def __init__(self, request: FakeRequest, stream: str, reshape: bool = True,
                 write: bool = True) -> None:
        assert stream == "lores" and not request.released
        self.request = request
        self.array: np.ndarray | None = None

    def __enter__(self) -> FakeMappedArray:
        self.array = self.request.buffer
        return self

    def __exit__(self, *exc: object) -> None:
        self.array = None


class FakePicamera2:
    """Only what Picamera2Frames uses, with picamera2's argument names."""

    instances: ClassVar[list[FakePicamera2]] = []
    camera_controls: ClassVar[dict] = {"FrameDurationLimits": (100, 10**6, 33333),
                                       "AfMode": (0, 2, 0)}

    def __init__(self) -> None:
        self.config: dict | None = None
        self.started = self.closed = False
        self.frames: list[np.ndarray] = []
        self.controls: list[dict] = []
        self.held = 0
        FakePicamera2.instances.append(self)

    def create_preview_configuration(self, main=None, lores=None, buffer_count=4, controls=None):
        # picamera2 puts its own defaults under the caller's controls.
        controls = {"FrameDurationLimits": (100, 83333)} | (controls or {})
        return {"main": main, "lores": lores, "buffer_count": buffer_count, "controls": controls}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def set_controls(self, controls: dict) -> None:
        self.controls.append(controls)

    def capture_request(self) -> FakeRequest:
        assert self.started and self.held == 0, "one request at a time"
        self.held += 1
        if self.frames:
            return FakeRequest(self, self.frames.pop(0))
        return FakeRequest(self, np.full((HEIGHT * 3 // 2, STRIDE), 128, dtype=np.uint8))

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


def yuv420_frame(card: Image.Image) -> np.ndarray:
    """A lores frame whose Y plane shows ``card``; padding and chroma hold noise."""
    frame = np.random.default_rng(1).integers(0, 255, (HEIGHT * 3 // 2, STRIDE), dtype=np.uint8)
    luma = Image.new("L", (WIDTH, HEIGHT), 200)
    luma.paste(card, (40, 20))
    frame[:HEIGHT, :WIDTH] = np.asarray(luma)
    frame[:HEIGHT, WIDTH:] = 0  # the padding columns are blank
    return frame


@pytest.fixture
def picamera2(monkeypatch):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    module.MappedArray = FakeMappedArray  # type: ignore[attr-defined]
    libcamera = types.ModuleType("libcamera")
    libcamera.controls = types.SimpleNamespace(  # type: ignore[attr-defined]
        AfModeEnum=types.SimpleNamespace(Manual=0, Auto=1, Continuous=2))
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    FakePicamera2.instances.clear()
    return FakePicamera2


def test_the_lores_y_plane_is_decoded_across_the_stride(picamera2):
    spec = CameraSpec(backend="picamera2", width=WIDTH, height=HEIGHT, fps=30)
    source = CameraSource(Picamera2Frames(spec), spec)
    seen: list[str] = []
    source.start(lambda code, _source, _at: seen.append(code))  # opens the camera
    camera = wait_for(lambda: picamera2.instances and picamera2.instances[0].started,
                      what="the camera started") and picamera2.instances[0]
    assert camera.config["lores"] == {"size": (WIDTH, HEIGHT), "format": "YUV420"}
    camera.frames.append(yuv420_frame(qr_card("LOY-ALICE01", module_px=3)))
    try:
        wait_for(lambda: seen == ["LOY-ALICE01"], what="the code from the Y plane")
    finally:
        source.stop()
    assert camera.closed and camera.held == 0


def test_the_configured_frame_rate_and_continuous_autofocus_are_asked_for(picamera2):
    frames = Picamera2Frames(CameraSpec(backend="picamera2", width=WIDTH, height=HEIGHT,
                                        fps=15))
    frames.open()
    controls = picamera2.instances[0].config["controls"]
    assert controls["FrameDurationLimits"] == (66667, 66667)  # 15 fps, not "as fast as possible"
    assert controls["AfMode"] == 2  # libcamera's AfModeEnum.Continuous
    frames.set_fps(5)
    assert picamera2.instances[0].controls == [{"FrameDurationLimits": (200000, 200000)}]
    frames.close()


def test_a_camera_without_autofocus_is_not_asked_for_it(picamera2, monkeypatch):
    monkeypatch.setattr(FakePicamera2, "camera_controls", {"FrameDurationLimits": (1, 2, 3)})
    frames = Picamera2Frames(CameraSpec(backend="picamera2", width=WIDTH, height=HEIGHT))
    frames.open()
    assert "AfMode" not in picamera2.instances[0].config["controls"]
    frames.close()


def test_a_frame_is_the_camera_buffer_itself_until_the_next_read(picamera2):
    frames = Picamera2Frames(CameraSpec(backend="picamera2", width=WIDTH, height=HEIGHT))
    frames.open()
    camera = picamera2.instances[0]
    buffer = yuv420_frame(qr_card("LOY-BOB0002", module_px=3))
    camera.frames.append(buffer)
    plane = frames.read()
    assert plane.shape == (HEIGHT, WIDTH)
    assert np.shares_memory(plane, buffer)  # the Y plane in place: no copy
    assert plane.strides == (STRIDE, 1)
    assert make_decoder("zxing").decode(plane) == ["LOY-BOB0002"]
    assert camera.held == 1
    frames.read()  # the previous request goes back to the camera
    assert camera.held == 1
    frames.close()
    assert camera.held == 0 and camera.closed


def test_without_picamera2_the_camera_is_reported_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a laptop
    from drivers import DriverUnavailable

    with pytest.raises(DriverUnavailable, match="python3-picamera2"):
        Picamera2Frames(CameraSpec()).open()
