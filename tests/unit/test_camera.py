"""The camera thread on the simulated camera: frame gating, idle rate, failure and recovery.

Real parts: the capture thread, zxing-cpp/zbar decoding real generated QR images,
the simulated camera's noisy frames. Only the sensor is simulated.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from PIL import Image

from drivers.camera import IN_VIEW_S, CameraSource, FrameReader, MotionGate
from drivers.qr import make_decoder
from drivers.sim import SimCamera
from drivers.specs import CameraSpec
from kiosk.testing.cards import qr_card
from kiosk.testing.footage import CounterFootage
from kiosk.testing.harness import wait_for


class Seen:
    """What the camera hands up: codes and problem reports, thread-safely."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.problems: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def code(self, code: str, _source: str, _at: float) -> None:
        with self._lock:
            self.codes.append(code)

    def problem(self, source: str, reason: str) -> None:
        with self._lock:
            self.problems.append((source, reason))


class RateRecordingCamera(SimCamera):
    """The simulated camera, noting each frame rate the capture thread asks for."""

    def __init__(self, spec: CameraSpec) -> None:
        super().__init__(spec)
        self.rates: list[float] = []

    def set_fps(self, fps: float) -> None:
        self.rates.append(fps)
        super().set_fps(fps)


@pytest.fixture
def running(tmp_path):
    started: list[CameraSource] = []

    def start(**settings) -> tuple[RateRecordingCamera, CameraSource, Seen]:
        spec = CameraSpec(**{"backend": "sim", "spool_dir": str(tmp_path / "spool"),
                             "fps": 30, "hold_s": 0.5, **settings})
        frames = RateRecordingCamera(spec)
        source = CameraSource(frames, spec)
        seen = Seen()
        source.start(seen.code, seen.problem)
        started.append(source)
        return frames, source, seen

    yield start
    for source in started:
        source.stop()


def _plane(card: Image.Image | None = None, at=(200, 150), shade=190) -> np.ndarray:
    canvas = Image.new("L", (640, 480), shade)
    if card is not None:
        canvas.paste(card, at)
    return np.asarray(canvas)


def _noisy(plane: np.ndarray, seed: int, sigma: float = 3.0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, plane.shape)
    return np.clip(plane + noise, 0, 255).astype(np.uint8)


# --- the gate on its own --------------------------------------------------------------


def test_sensor_noise_on_an_empty_counter_is_not_decoded():
    gate = MotionGate(threshold=0.004, idle_after_s=10)
    empty = _plane()
    assert gate.should_decode(_noisy(empty, 0), now=0.0)  # the first frame is always looked at
    decoded = [gate.should_decode(_noisy(empty, n), now=2.0 + n / 15) for n in range(1, 60)]
    assert not any(decoded)


def test_a_small_card_is_decoded_when_it_appears_now_and_then_while_held_and_once_gone():
    zone = CameraSpec(backend="sim").card_zone
    gate = MotionGate(threshold=0.004, idle_after_s=10, zone=zone)
    gate.should_decode(_plane(), now=0.0)
    assert not gate.should_decode(_noisy(_plane(), 1), now=2.0)
    small = qr_card("LOY-ALICE01", module_px=2)  # 58 px: a card held far away
    with_card = _plane(small)
    assert gate.should_decode(_noisy(with_card, 2), now=2.1)
    gate.decoded(True)
    # Held: looked at again now and then (so it is known to be still there), not every frame.
    assert not gate.should_decode(_noisy(with_card, 3), now=2.2)
    assert gate.should_decode(_noisy(with_card, 4), now=2.1 + IN_VIEW_S)
    gate.decoded(True)
    assert gate.should_decode(_noisy(_plane(), 5), now=2.7)  # taken away: looked at once
    gate.decoded(False)
    assert not gate.should_decode(_noisy(_plane(), 6), now=4.0)


def test_a_card_outside_the_zone_where_cards_are_held_is_not_news():
    gate = MotionGate(threshold=0.004, idle_after_s=10, zone=(200, 100, 240, 280))
    gate.should_decode(_plane(), now=0.0)
    aside = _plane(qr_card("LOY-ALICE01", module_px=3), at=(480, 20))  # on the shelf behind
    assert not any(gate.should_decode(_noisy(aside, n), now=2.0 + n / 15) for n in range(30))


def test_the_gate_goes_idle_when_nothing_moves():
    gate = MotionGate(threshold=0.004, idle_after_s=5)
    gate.should_decode(_plane(), now=0.0)
    assert gate.active(4.0)
    assert not gate.active(6.0)
    gate.should_decode(_plane(qr_card("LOY-ALICE01")), now=7.0)
    assert gate.active(7.0)


def test_flickering_dimming_light_and_glare_are_not_looked_at():
    gate = MotionGate(threshold=0.004, idle_after_s=10, zone=(120, 40, 400, 400))
    gate.should_decode(_plane(shade=150), now=0.0)
    looked = []
    for n in range(90):
        light = (1 + 0.06 * math.sin(n * 0.55)) * (1 - 0.1 * min(1.0, n / 45))
        plane = _plane(shade=round(150 * light))
        if 30 <= n < 50:  # a reflection flashing up on the counter
            plane = plane.copy()
            plane[200:260, 250:330] = 255
        looked.append(gate.should_decode(_noisy(plane, n), now=2.0 + n / 15))
    assert not any(looked)


def test_a_busy_counter_has_every_card_read_soon_after_it_is_held_still_decoding_few_frames():
    """People walking past behind, flickering light, glare, near and far cards about every
    20 s, each held 1-2 s (kiosk.testing.footage): read as the capture thread reads."""
    reader = FrameReader(CameraSpec(backend="sim", fps=15), make_decoder("auto"))
    footage = CounterFootage(100, seed=19)
    read: dict[int, float] = {}
    decoded = 0
    for shot in footage:
        codes = reader.look(shot.plane, shot.at)
        decoded += codes is not None
        if shot.code and codes and shot.code in codes:
            still = shot.still_since if shot.still_since is not None else shot.at
            read.setdefault(shot.showing, shot.at - still)  # <= 0: read as it came to rest
    assert len(footage.showings) >= 4
    assert sorted(read) == list(range(len(footage.showings))), "a card was not read"
    assert max(read.values()) <= 0.3, f"read {max(read.values()):.2f} s after it was still"
    assert decoded <= footage.frames / 5, f"{decoded} of {footage.frames} frames decoded"


# --- the capture thread ---------------------------------------------------------------


def test_an_empty_counter_is_filmed_but_not_decoded(running):
    _frames, source, _seen = running()
    wait_for(lambda: source.frames_seen >= 40, what="the settling time after start (1 s)")
    decoded = source.frames_decoded
    assert decoded <= 32
    wait_for(lambda: source.frames_seen >= 70, what="another second of frames")
    assert source.frames_decoded == decoded


def test_a_card_left_in_view_is_looked_at_now_and_then_and_handed_up_once(running):
    frames, source, seen = running()
    wait_for(lambda: source.frames_seen >= 40, what="the counter settled")
    frames.set_scene(qr_card("LOY-ALICE01"))
    wait_for(lambda: seen.codes, what="the card")
    first = source.frames_seen, source.frames_decoded
    wait_for(lambda: source.frames_seen >= first[0] + 90, what="three seconds of frames")
    assert 3 / IN_VIEW_S - 2 <= source.frames_decoded - first[1] <= 45
    assert seen.codes == ["LOY-ALICE01"]


def test_the_camera_drops_to_the_idle_rate_and_comes_back_on_motion(running):
    frames, _source, seen = running(idle_fps=5, idle_after_s=0.3)
    wait_for(lambda: frames.rates == [5], what="the idle rate")
    frames.show(qr_card("LOY-BOB0002"))
    wait_for(lambda: seen.codes == ["LOY-BOB0002"], what="the card")
    assert frames.rates[1] == 30
    wait_for(lambda: frames.rates[-1] == 5 and len(frames.rates) == 3, what="idle again")


def test_only_the_region_of_interest_is_looked_at(running):
    frames, _source, seen = running(roi="0,0,200,480")  # the card is shown in the middle
    frames.show(qr_card("LOY-CENTRE1"))
    wait_for(lambda: _source.frames_seen > 40, what="frames (the card is held for 15)")
    assert seen.codes == []


def test_a_failed_camera_is_reported_reopened_and_reads_again(running):
    frames, _source, seen = running()
    wait_for(lambda: _source.frames_seen > 3, what="frames")
    frames.unplug()
    wait_for(lambda: seen.problems, what="the failure reported")
    assert seen.problems[0][0] == "camera" and "lost" in seen.problems[0][1]
    frames.plug()
    wait_for(lambda: seen.problems[-1] == ("camera", ""), what="the camera working again")
    frames.show(qr_card("LOY-AFTER01"))
    wait_for(lambda: seen.codes == ["LOY-AFTER01"], what="a card read after the failure")
