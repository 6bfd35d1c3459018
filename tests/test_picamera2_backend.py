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
from drivers.specs import CameraSpec
from kiosk.testing.cards import qr_card
from kiosk.testing.harness import wait_for

WIDTH, HEIGHT, STRIDE = 320, 240, 384


class FakePicamera2:
    """Only what Picamera2Frames uses, with picamera2's argument names."""

    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self) -> None:
        self.config: dict | None = None
        self.started = self.closed = False
        self.frames: list[np.ndarray] = []
        FakePicamera2.instances.append(self)

    def create_preview_configuration(self, main=None, lores=None, buffer_count=4):
        return {"main": main, "lores": lores, "buffer_count": buffer_count}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert name == "lores" and self.started
        if self.frames:
            return self.frames.pop(0)
        return np.full((HEIGHT * 3 // 2, STRIDE), 128, dtype=np.uint8)

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
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances.clear()
    return FakePicamera2


def test_the_lores_y_plane_is_decoded_in_place_across_the_stride(picamera2):
    spec = CameraSpec(backend="picamera2", width=WIDTH, height=HEIGHT, fps=30)
    source = CameraSource(Picamera2Frames(spec), spec)
    seen: list[str] = []
    source.start(lambda code, _source, _at: seen.append(code))  # opens the camera
    camera = picamera2.instances[0]
    assert camera.config["lores"] == {"size": (WIDTH, HEIGHT), "format": "YUV420"}
    camera.frames.append(yuv420_frame(qr_card("LOY-ALICE01", module_px=3)))
    try:
        wait_for(lambda: seen == ["LOY-ALICE01"], what="the code from the Y plane")
    finally:
        source.stop()
    assert camera.closed


def test_a_frame_is_handed_to_zbar_without_a_copy(picamera2):
    frames = Picamera2Frames(CameraSpec(backend="picamera2", width=WIDTH, height=HEIGHT))
    frames.open()
    picamera2.instances[0].frames.append(yuv420_frame(qr_card("LOY-BOB0002", module_px=3)))
    pixels, width, height = frames.read()
    assert (width, height) == (STRIDE, HEIGHT)
    assert pixels.base is not None  # a view into picamera2's array, not a copy
    assert pixels.flags["C_CONTIGUOUS"]


def test_without_picamera2_the_camera_is_reported_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a laptop
    from drivers import DriverUnavailable

    with pytest.raises(DriverUnavailable, match="python3-picamera2"):
        Picamera2Frames(CameraSpec()).open()
