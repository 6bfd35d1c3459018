"""The drivers on real libraries: zbar decoding real QR images, pyserial on a pty,
gpiozero's MockFactory pins, luma's dummy device."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from drivers import DriverError
from drivers.base import Debounce
from drivers.camera import CameraSource, region
from drivers.display import DisplayWorker
from drivers.qr import installed_decoders, make_decoder
from drivers.serial_reader import SerialCodeSource
from drivers.sim import PtySerial, SimCamera, make_dummy_display
from drivers.specs import CameraSpec, DisplaySpec, SerialSpec
from kiosk.testing.cards import blank_card, qr_card
from kiosk.testing.harness import wait_for


def _frame(card: Image.Image, size=(640, 480)) -> np.ndarray:
    canvas = Image.new("L", size, 190)
    canvas.paste(card, (37, 51))
    return np.asarray(canvas)


class Collector:
    """Records what a code source hands up, thread-safely."""

    def __init__(self) -> None:
        self.codes: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, code: str, source: str, seen_at: float) -> None:
        assert abs(seen_at - time.time()) < 5
        with self._lock:
            self.codes.append((code, source))


# --- QR decoding ------------------------------------------------------------------

DECODERS = ["zxing", "pyzbar"]


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_reads_a_qr_code_in_a_camera_frame(name):
    decoder = make_decoder(name)
    assert decoder.name == name
    assert decoder.decode(_frame(qr_card("LOY-ALICE01"))) == ["LOY-ALICE01"]


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_reads_a_strided_view_of_a_wider_buffer(name):
    """picamera2's lores rows are wider than the image, and a region of interest is a view."""
    buffer = np.zeros((480, 704), dtype=np.uint8)
    buffer[:, :640] = _frame(qr_card("LOY-BOB0002"))
    view = buffer[:, :640]
    assert not view.flags["C_CONTIGUOUS"]
    assert make_decoder(name).decode(view) == ["LOY-BOB0002"]
    assert make_decoder(name).decode(region(view, (0, 0, 320, 400))) == ["LOY-BOB0002"]
    assert make_decoder(name).decode(region(view, (400, 0, 240, 480))) == []


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_finds_nothing_in_blank_or_noisy_frames(name):
    decoder = make_decoder(name)
    noise = np.random.default_rng(7).integers(0, 256, (240, 320), dtype=np.uint8)
    assert decoder.decode(_frame(blank_card())) == []
    assert decoder.decode(noise) == []


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_reads_garbage_payloads_as_text_for_the_controller_to_reject(name):
    decoder = make_decoder(name)
    assert decoder.decode(_frame(qr_card("'; DROP TABLE members; --"))) == [
        "'; DROP TABLE members; --"]


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_refuses_what_is_not_a_grayscale_plane(name):
    with pytest.raises(DriverError, match="2-D uint8"):
        make_decoder(name).decode(np.zeros((48, 64, 3), dtype=np.uint8))
    with pytest.raises(DriverError, match="2-D uint8"):
        make_decoder(name).decode(bytes(100))


def test_zxing_looks_again_with_the_local_binarizer_when_the_fast_one_finds_nothing():
    import zxingcpp

    shade = np.linspace(0.1, 1.0, 640)[None, :]  # light from one side only
    plane = np.clip(_frame(qr_card("LOY-SHADOW01")) * shade, 0, 255).astype(np.uint8)
    fast_only = zxingcpp.read_barcodes(plane, formats=zxingcpp.BarcodeFormat.QRCode,
                                       binarizer=zxingcpp.Binarizer.GlobalHistogram,
                                       try_rotate=False, try_invert=False, try_downscale=False)
    assert fast_only == []
    assert make_decoder("zxing").decode(plane) == ["LOY-SHADOW01"]


def test_auto_takes_the_fastest_installed_decoder():
    assert installed_decoders() == ["zxing", "pyzbar"]
    assert make_decoder("auto").name == "zxing"


def test_auto_with_zxing_installed_leaves_zbar_and_its_libraries_unloaded():
    program = ("import sys; from drivers.qr import make_decoder; make_decoder('auto'); "
               "print(sorted(m for m in sys.modules if m.startswith('pyzbar')))")
    loaded = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_debounce_hands_a_held_card_up_once_and_different_cards_at_once():
    now = [0.0]
    debounce = Debounce(5.0, absent_s=1.0, clock=lambda: now[0])
    held = []
    for _ in range(150):  # a card held for 10 s, read at 15 frames a second
        held.append(debounce.accept("A"))
        now[0] += 1 / 15
    assert held.count(True) == 1
    assert debounce.accept("B")  # the next customer, straight away
    now[0] += 1.5  # A out of view for 1.5 s, and handed up 11.5 s ago: a new visit
    assert debounce.accept("A")
    now[0] += 1.5
    assert not debounce.accept("A")  # back within the cooldown: still the same visit


def test_debounce_forgets_codes_that_are_gone_but_never_one_in_view():
    now = [0.0]
    debounce = Debounce(5.0, absent_s=1.0, clock=lambda: now[0], remember=8)
    for n in range(100):
        debounce.accept(f"C{n}")
        now[0] += 0.01
        assert not debounce.accept("HELD") or n == 0
    now[0] += 10
    assert debounce.accept("C1")


# --- simulated camera ---------------------------------------------------------------


@pytest.fixture
def camera(tmp_path):
    spec = CameraSpec(backend="sim", spool_dir=str(tmp_path / "spool"), hold_s=0.3, fps=30)
    frames = SimCamera(spec)
    source = CameraSource(frames, spec)
    seen = Collector()
    source.start(seen)
    yield frames, seen
    source.stop()


def test_a_card_dropped_in_the_spool_is_read_once_then_taken_away(camera):
    frames, seen = camera
    partial = frames.spool / ".card.png"
    qr_card("LOY-ALICE01").save(partial)
    card = partial.rename(frames.spool / "card.png")
    wait_for(lambda: seen.codes, what="the code")
    wait_for(lambda: not card.exists(), what="the card taken away")
    assert seen.codes == [("LOY-ALICE01", "camera")]


def test_spool_files_that_are_not_images_are_removed_and_dotfiles_left_alone(camera):
    frames, seen = camera
    junk = frames.spool / "notes.txt"
    junk.write_text("hello")
    hidden = frames.spool / ".half-written.png"
    hidden.write_bytes(b"\x89PNG")
    wait_for(lambda: not junk.exists(), what="junk removed")
    frames.show(qr_card("LOY-BOB0002"))
    wait_for(lambda: seen.codes, what="the shown card")
    assert hidden.exists()
    assert seen.codes == [("LOY-BOB0002", "camera")]


def test_cards_shown_in_code_are_read_in_order(camera):
    frames, seen = camera
    for member in ("LOY-ALICE01", "LOY-BOB0002"):
        frames.show(qr_card(member))
    frames.show(blank_card())
    wait_for(lambda: len(seen.codes) == 2, what="both cards")
    assert [code for code, _ in seen.codes] == ["LOY-ALICE01", "LOY-BOB0002"]


# --- serial reader on a pseudo-terminal ---------------------------------------------


@pytest.fixture
def serial_reader(tmp_path):
    spec = SerialSpec(backend="sim", sim_link=str(tmp_path / "serial"), cooldown_s=5.0)
    pty = PtySerial(spec)
    source = SerialCodeSource(spec, port=pty.device, on_open=pty.reader_open.set)
    seen = Collector()
    source.start(seen)
    yield pty, seen
    source.stop()
    pty.close()


def test_codes_typed_before_the_reader_opens_are_not_lost(tmp_path):
    spec = SerialSpec(backend="sim", sim_link=str(tmp_path / "serial"))
    pty = PtySerial(spec)
    pty.type("LOY-EARLY01")
    source = SerialCodeSource(spec, port=pty.device, on_open=pty.reader_open.set)
    seen = Collector()
    source.start(seen)
    try:
        wait_for(lambda: seen.codes == [("LOY-EARLY01", "serial")], what="the early code")
    finally:
        source.stop()
        pty.close()


def test_serial_codes_arrive_one_per_line_with_repeats_dropped(serial_reader):
    pty, seen = serial_reader
    pty.type("LOY-ALICE01")
    pty.type("LOY-ALICE01")
    pty.type("  LOY-BOB0002\n")
    wait_for(lambda: len(seen.codes) == 2, what="two codes")
    time.sleep(0.2)
    assert seen.codes == [("LOY-ALICE01", "serial"), ("LOY-BOB0002", "serial")]


def test_any_program_can_type_into_the_linked_path(serial_reader):
    pty, seen = serial_reader
    fd = os.open(pty.link, os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, b"LOY-CAROL03\r")
    finally:
        os.close(fd)
    wait_for(lambda: seen.codes == [("LOY-CAROL03", "serial")], what="the typed code")


def test_line_noise_goes_up_to_be_refused_and_reading_goes_on(serial_reader):
    pty, seen = serial_reader
    pty.send(b"\x00\xff" * 400)  # 800 bytes, no terminator: spoils the line it is on
    pty.send(b"LOY-SPOILT1\r")
    pty.send(b"\x00\xffLOY-BINARY2\r")  # binary garbage on a line of its own
    pty.type("LOY-DAVE004")
    wait_for(lambda: len(seen.codes) == 3, what="the code after noise")
    spoilt, binary, good = (code for code, _source in seen.codes)
    assert spoilt.endswith("LOY-SPOILT1") and "\ufffd" in spoilt  # refused: "Unreadable code"
    assert binary == "\ufffdLOY-BINARY2" and good == "LOY-DAVE004"


def test_a_reader_plugged_in_later_is_opened_when_it_appears(tmp_path):
    spec = SerialSpec(backend="sim", sim_link=str(tmp_path / "serial"))
    late_path = tmp_path / "ttyUSB-late"
    pty = PtySerial(spec)
    source = SerialCodeSource(spec, port=str(late_path), on_open=pty.reader_open.set)
    seen = Collector()
    source.start(seen)
    try:
        time.sleep(0.5)  # the reader is retrying with back-off
        late_path.symlink_to(pty.device)
        pty.type("LOY-ERIN005")  # held until the reader has opened the port
        wait_for(lambda: seen.codes == [("LOY-ERIN005", "serial")], timeout=10,
                 what="the late reader's code")
        pty.close()
    finally:
        source.stop()


# --- display ------------------------------------------------------------------------


def test_display_worker_shows_the_newest_frame_and_saves_it(tmp_path):
    device = make_dummy_display(DisplaySpec(backend="sim", sim_png=str(tmp_path / "oled.png")))
    worker = DisplayWorker(device)
    worker.start()
    frames = [Image.new("1", (128, 64), 0), Image.new("1", (128, 64), 1)]
    for frame in frames:
        worker.show(frame)
    worker.stop()
    assert device.image.convert("1").tobytes() == frames[-1].tobytes()
    with Image.open(tmp_path / "oled.png") as saved:
        assert saved.convert("1").tobytes() == frames[-1].tobytes()
    assert worker.frames_shown + worker.frames_skipped == 2


SIM_DISPLAY_CLOSED_THEN_FOLDER_GONE = """
import shutil, sys
from pathlib import Path
from PIL import Image
from drivers.factory import make_hardware
from drivers.specs import CameraSpec, DisplaySpec, HardwareSpec, LightsSpec, SerialSpec
state = Path(sys.argv[1])
hardware, _ = make_hardware(HardwareSpec(
    CameraSpec(backend="none"), SerialSpec(backend="none"),
    DisplaySpec(backend="sim", sim_png=str(state / "display.png")), LightsSpec(backend="none")))
hardware.display.display(Image.new("1", (128, 64), 1))
assert (state / "display.png").exists()
hardware.close()
shutil.rmtree(state)  # a test's temporary state folder, removed before the process ends
"""


def test_a_closed_simulated_display_writes_nothing_when_the_process_exits(tmp_path):
    """luma blanks every device again at interpreter exit (luma.core 2.6.0,
    ``device.__init__`` registers ``cleanup`` with atexit): the simulated panel then saved a
    blank picture, making its folder again after a test or benchmark had removed it."""
    state = tmp_path / "state"
    done = subprocess.run([sys.executable, "-c", SIM_DISPLAY_CLOSED_THEN_FOLDER_GONE,
                           str(state)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not state.exists()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header for an image far too large to open (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def test_broken_and_hostile_image_files_do_not_stop_the_camera(camera):
    frames, seen = camera
    (frames.spool / "a-bomb.png").write_bytes(_png_claiming(60000, 60000))
    (frames.spool / "b-truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    partial = frames.spool / ".card.png"
    qr_card("LOY-ALICE01").save(partial)
    partial.rename(frames.spool / "c-card.png")
    wait_for(lambda: seen.codes == [("LOY-ALICE01", "camera")], what="the good card")
    wait_for(lambda: not (frames.spool / "a-bomb.png").exists(), what="the bomb thrown away")
    # Each is given up GIVE_UP_S after it was written: the second a moment later.
    wait_for(lambda: not (frames.spool / "b-truncated.png").exists(), what="the stub thrown away")


def test_a_spool_image_too_large_is_refused_from_its_header_and_counted(camera):
    frames, seen = camera
    Image.new("1", (9000, 9000)).save(frames.spool / ".huge.png")  # a small file, 81 Mpx
    (frames.spool / ".huge.png").rename(frames.spool / "a-huge.png")
    partial = frames.spool / ".card.png"
    qr_card("LOY-ALICE01").save(partial)
    partial.rename(frames.spool / "b-card.png")
    wait_for(lambda: seen.codes == [("LOY-ALICE01", "camera")], what="the good card")
    assert not (frames.spool / "a-huge.png").exists() and frames.spool_refused == 1
