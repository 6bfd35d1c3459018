"""Serial (both framings), keyboard-wedge and NFC readers through their simulated backends.

Real parts: pyserial on a pseudo-terminal; evdev's own event reader on key events in
the kernel's ``struct input_event`` format (and evdev's ``UInput`` where this machine
has ``/dev/uinput``); Adafruit's PN532 calls answered by a simulated reader.
"""

from __future__ import annotations

import logging
import os
import time

import pytest

from drivers.framing import MAX_LINE, LineFramer, StxEtxFramer
from drivers.nfc import NfcCodeSource, ndef_message, ndef_text, ndef_text_memory, read_tag_code
from drivers.serial_reader import SerialCodeSource
from drivers.sim import PtySerial, SimKeyboard, SimPn532
from drivers.specs import NfcSpec, SerialSpec, WedgeSpec
from drivers.wedge import KeyDecoder, WedgeCodeSource, evdev_key_codes
from kiosk.testing.harness import wait_for
from tests.devices import Seen


def rdm6300(tag: bytes) -> bytes:
    """An RDM6300 frame for a 5-byte tag (version + 32-bit id): STX, hex, XOR checksum, ETX."""
    checksum = 0
    for byte in tag:
        checksum ^= byte
    return b"\x02" + (tag + bytes([checksum])).hex().upper().encode() + b"\x03"


# --- framing -----------------------------------------------------------------------------


def test_lines_end_at_cr_lf_or_crlf_whatever_the_scanner_sends():
    framer = LineFramer()
    assert framer.feed(b"LOY-A1\rLOY-B2\nLOY-C3\r\nLOY-") == [b"LOY-A1", b"LOY-B2", b"LOY-C3"]
    assert framer.feed(b"D4\r\n\r\n") == [b"LOY-D4"]
    assert framer.discarded == 0


def test_an_over_long_line_goes_up_cut_the_rest_is_counted_and_the_next_one_read():
    framer = LineFramer()
    assert framer.feed(b"X" * 4096) == []
    assert framer.feed(b"Y" * 100 + b"\rLOY-NEXT1\r") == [b"X" * MAX_LINE, b"LOY-NEXT1"]
    assert framer.discarded == 4196 - MAX_LINE


def test_lines_that_cannot_be_codes_still_go_up_to_be_refused_where_the_customer_is():
    framer = LineFramer()
    assert framer.feed(b"\xff\xfe\x80\rLOY-\x1bA\r\x02\x03\r") == [b"\xff\xfe\x80",
                                                                   b"LOY-\x1bA"]
    assert framer.discarded == 0


def test_rdm6300_frames_are_checked_and_become_tag_ids():
    framer = StxEtxFramer()
    good = rdm6300(bytes.fromhex("0F00A1B2C3"))
    bad = good[:-2] + b"0\x03"  # a wrong checksum digit
    assert framer.feed(b"\xff\x00" + good + bad + good[:5]) == [b"uid:0F00A1B2C3"]
    assert framer.feed(good[5:]) == [b"uid:0F00A1B2C3"]
    assert framer.feed(b"\x02LOY-PLAIN1\x03") == [b"LOY-PLAIN1"]  # other STX/ETX readers
    assert framer.discarded == 2 + 14 + 0


# --- serial readers on a pty ----------------------------------------------------------------


@pytest.fixture
def serial_source(tmp_path):
    made: list[tuple[PtySerial, SerialCodeSource]] = []

    def make(framing: str = "lines", port: str | None = None) -> tuple[PtySerial, Seen]:
        spec = SerialSpec(backend="sim", sim_link=str(tmp_path / f"serial{len(made)}"),
                          framing=framing)
        pty = PtySerial(spec)
        source = SerialCodeSource(spec, port=port or pty.device, on_open=pty.reader_open.set)
        seen = Seen()
        source.start(seen.code, seen.problem)
        made.append((pty, source))
        return pty, seen

    yield make
    for pty, source in made:
        source.stop()
        pty.close()


def test_a_scanner_sending_crlf_is_read(serial_source):
    pty, seen = serial_source()
    pty.send(b"LOY-CRLF001\r\nLOY-LF00002\n")
    wait_for(lambda: len(seen.codes) == 2, what="both codes")
    assert seen.codes == [("LOY-CRLF001", "serial"), ("LOY-LF00002", "serial")]


def test_an_rdm6300_tag_is_read_once_while_it_lies_on_the_antenna(serial_source):
    pty, seen = serial_source("stx-etx")
    for _ in range(5):  # the module repeats the tag while it is in the field
        pty.send(rdm6300(bytes.fromhex("0F00A1B2C3")))
    pty.type("LOY-AFTER01")  # framed with STX/ETX by the simulated reader
    wait_for(lambda: len(seen.codes) == 2, what="the tag and the next code")
    time.sleep(0.2)
    assert seen.codes == [("uid:0F00A1B2C3", "serial"), ("LOY-AFTER01", "serial")]


def test_a_4kb_line_goes_up_cut_and_the_rest_is_a_counted_warning(serial_source, caplog):
    pty, seen = serial_source()
    with caplog.at_level(logging.WARNING, logger="drivers.serial_reader"):
        pty.send(b"A" * 4096 + b"\r")
        pty.type("LOY-GOOD001")
        wait_for(lambda: len(seen.codes) == 2, what="the good code")
    assert seen.codes == [("A" * MAX_LINE, "serial"), ("LOY-GOOD001", "serial")]
    assert "discarded" in caplog.text and f"{4096 - MAX_LINE} so far" in caplog.text


def test_a_reader_found_by_a_by_id_glob(serial_source, tmp_path):
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    spec_pty = PtySerial(SerialSpec(backend="sim", sim_link=str(tmp_path / "other")))
    try:
        (by_id / "usb-Acme_QR_Scanner_1234-if00").symlink_to(spec_pty.device)
        spec = SerialSpec(backend="pyserial", port=str(by_id / "usb-*QR_Scanner*"))
        source = SerialCodeSource(spec, on_open=spec_pty.reader_open.set)
        seen = Seen()
        source.start(seen.code, seen.problem)
        try:
            spec_pty.type("LOY-BYID001")
            wait_for(lambda: seen.codes == [("LOY-BYID001", "serial")], what="the code")
        finally:
            source.stop()
    finally:
        spec_pty.close()


def test_a_missing_scanner_is_reported_once_and_its_recovery_too(tmp_path, caplog):
    link = tmp_path / "ttyACM-scanner"
    spec = SerialSpec(backend="pyserial", port=str(link))
    source = SerialCodeSource(spec)
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="drivers.base"):
        source.start(seen.code, seen.problem)
        try:
            time.sleep(1.6)  # retries at 0.2, 0.4, 0.8 s
            assert len(seen.problems) == 1 and "cannot open" in seen.problems[0][1]
            assert caplog.text.count("cannot open") == 1
            pty = PtySerial(SerialSpec(backend="sim", sim_link=str(tmp_path / "typing")))
            link.symlink_to(pty.device)
            wait_for(lambda: seen.problems[-1] == ("serial", ""), what="the recovery")
        finally:
            source.stop()
    pty.close()


def test_an_unplugged_scanner_is_reopened_when_it_comes_back(serial_source, tmp_path):
    link = tmp_path / "by-id-scanner"
    first = PtySerial(SerialSpec(backend="sim", sim_link=str(tmp_path / "first")))
    link.symlink_to(first.device)
    _pty, seen = serial_source(port=str(link))
    first.close()  # the reader's device goes away: reads fail
    link.unlink()
    wait_for(lambda: any("lost" in reason for _, reason in seen.problems), what="the loss")
    second = PtySerial(SerialSpec(backend="sim", sim_link=str(tmp_path / "second")))
    try:
        link.symlink_to(second.device)
        second.reader_open.set()
        wait_for(lambda: seen.problems[-1] == ("serial", ""), what="reopened")
        second.type("LOY-REPLUG1")
        wait_for(lambda: seen.codes == [("LOY-REPLUG1", "serial")], what="a code after replug")
    finally:
        second.close()


# --- keyboard wedge ---------------------------------------------------------------------


def test_the_us_layout_with_shift_makes_every_printable_ascii_character():
    keyboard = SimKeyboard()
    keys = KeyDecoder(evdev_key_codes())
    text = "".join(chr(c) for c in range(32, 127))
    keyboard.type(text)
    codes = []
    while True:  # evdev reads at most 64 events at a time
        try:
            codes += [keys.feed(e.type, e.code, e.value) for e in keyboard.read()]
        except BlockingIOError:
            break
    assert [c for c in codes if c] == [text]
    keyboard.release()


def test_a_key_outside_the_layout_spoils_the_code_and_is_counted():
    from evdev import ecodes

    keys = KeyDecoder(evdev_key_codes())
    for key in (ecodes.KEY_A, ecodes.KEY_F1, ecodes.KEY_B, ecodes.KEY_ENTER):
        assert keys.feed(ecodes.EV_KEY, key, 1) is None
    assert keys.discarded == 1
    keys.feed(ecodes.EV_KEY, ecodes.KEY_C, 1)
    assert keys.feed(ecodes.EV_KEY, ecodes.KEY_ENTER, 1) == "c"


@pytest.fixture
def wedge():
    keyboard = SimKeyboard()
    source = WedgeCodeSource(WedgeSpec(backend="sim"), opener=keyboard.open)
    seen = Seen()
    source.start(seen.code, seen.problem)
    yield keyboard, seen
    source.stop()
    keyboard.release()


def test_a_wedge_scanner_is_grabbed_and_its_codes_read_once(wedge):
    keyboard, seen = wedge
    wait_for(lambda: keyboard.grabbed, what="the grab")
    for _ in range(3):  # a scanner in continuous mode repeats the code
        keyboard.type("LOY-WEDGE01")
    keyboard.type("LOY-Other_2!")
    wait_for(lambda: len(seen.codes) == 2, what="two codes")
    time.sleep(0.2)
    assert seen.codes == [("LOY-WEDGE01", "keyboard"), ("LOY-Other_2!", "keyboard")]


def test_an_unplugged_wedge_scanner_is_reported_and_reopened(wedge):
    keyboard, seen = wedge
    wait_for(lambda: keyboard.grabbed, what="the grab")
    keyboard.unplug()
    wait_for(lambda: seen.problems and "lost" in seen.problems[0][1], what="the loss")
    keyboard.plug()
    wait_for(lambda: seen.problems[-1] == ("keyboard", ""), what="reopened")
    keyboard.type("LOY-REPLUG2")
    wait_for(lambda: seen.codes == [("LOY-REPLUG2", "keyboard")], what="a code after replug")


@pytest.mark.skipif(not os.path.exists("/dev/uinput"), reason="no /dev/uinput on this machine")
def test_a_uinput_keyboard_is_found_by_name_and_read():  # pragma: no cover - needs uinput
    from evdev import UInput, ecodes

    with UInput({ecodes.EV_KEY: list(evdev_key_codes().values())},
                name="kiosk-test QR scanner") as device:
        source = WedgeCodeSource(WedgeSpec(backend="evdev", device="kiosk-test QR"))
        seen = Seen()
        source.start(seen.code, seen.problem)
        try:
            time.sleep(0.5)
            for key in (ecodes.KEY_L, ecodes.KEY_1, ecodes.KEY_ENTER):
                device.write(ecodes.EV_KEY, key, 1)
                device.write(ecodes.EV_KEY, key, 0)
                device.syn()
            wait_for(lambda: seen.codes == [("l1", "keyboard")], what="the typed code")
        finally:
            source.stop()


# --- NFC ----------------------------------------------------------------------------------


def test_ndef_text_round_trips_through_tag_memory():
    for text in ("LOY-ALICE01", "é" * 200, "x" * 300):
        memory = ndef_text_memory(text)
        assert ndef_text(ndef_message(memory)) == text


def test_a_tag_with_a_text_record_gives_its_text_and_others_their_uid():
    reader = SimPn532()
    reader.tap(b"\x04\xa1\xb2\xc3\xd4\xe5\xf6", text="LOY-NFCTAG1")
    assert read_tag_code(reader, b"\x04\xa1\xb2\xc3\xd4\xe5\xf6") == "LOY-NFCTAG1"
    reader.tap(b"\xde\xad\xbe\xef")  # MIFARE Classic: pages unreadable
    assert read_tag_code(reader, b"\xde\xad\xbe\xef") == "uid:DEADBEEF"
    reader.tap(b"\x01\x02\x03\x04", memory=b"\x03\x05\xd1\x01\x01U\x00\xfe\x00")  # a URL record
    assert read_tag_code(reader, b"\x01\x02\x03\x04") == "uid:01020304"
    reader.tap(b"\x01\x02\x03\x04", memory=ndef_text_memory("LOY-LIFTED1")[:8])  # lifted
    assert read_tag_code(reader, b"\x01\x02\x03\x04") is None


@pytest.fixture
def nfc():
    reader = SimPn532()
    source = NfcCodeSource(NfcSpec(backend="sim"), opener=reader.open)
    seen = Seen()
    source.start(seen.code, seen.problem)
    yield reader, seen
    source.stop()


def test_a_tag_left_on_the_reader_goes_up_once_and_the_next_tag_at_once(nfc):
    reader, seen = nfc
    reader.tap(b"\x04\x11\x22\x33\x44\x55\x66", text="LOY-NFCTAG1")
    wait_for(lambda: seen.codes, what="the tag")
    time.sleep(0.5)  # still lying there
    reader.take_away()
    time.sleep(0.3)
    reader.tap(b"\x04\x99\x88\x77\x66\x55\x44")  # the next customer
    wait_for(lambda: len(seen.codes) >= 2, what="the second tag")
    time.sleep(0.3)
    assert seen.codes == [("LOY-NFCTAG1", "nfc"), ("uid:04998877665544", "nfc")]
    assert reader.configured


def test_a_pn532_that_stops_answering_is_reported_and_reopened(nfc):
    reader, seen = nfc
    wait_for(lambda: reader.configured, what="the reader configured")
    reader.unplug()
    wait_for(lambda: seen.problems, what="the loss")
    reader.plug()
    wait_for(lambda: seen.problems[-1] == ("nfc", ""), what="reopened")
    reader.tap(b"\x04\x01\x02\x03\x04\x05\x06", text="LOY-BACK001")
    wait_for(lambda: seen.codes == [("LOY-BACK001", "nfc")], what="a tag after recovery")


# --- the whole kiosk -----------------------------------------------------------------------
