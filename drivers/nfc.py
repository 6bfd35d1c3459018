"""NFC tap: a PN532 reader (the common Raspberry Pi NFC HAT) handing up what a tag says.

A tag that carries an NDEF *text* record (NTAG213/215/216 stickers and cards,
which may hold a signed member card) gives that text; any other tag (MIFARE
Classic, a bank card, a tag with a URL) gives its UID as ``uid:<HEX>``, which the
member-code rules accept or refuse.

The library is Adafruit's ``adafruit-circuitpython-pn532`` (checked against
adafruit/Adafruit_CircuitPython_PN532 commit e281ef9, adafruit_pn532/*.py):
maintained (releases in 2025-2026), speaks I2C, SPI and UART through Blinka on
a Pi, and its UART class needs only ``read``/``write``/``in_waiting``/
``reset_input_buffer`` — pyserial's ``Serial`` as it is. ``nfcpy`` was the other
candidate: its last release is from 2022 and it drives a PN532 over UART only.
The kiosk uses ``SAM_configuration()``, ``read_passive_target(timeout=)`` (the
UID as bytes, or None) and ``ntag2xx_read_block(page)`` (4 bytes, or None), and
nothing else: :class:`TagReader`, which the simulated reader implements too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from drivers import DriverUnavailable
from drivers.base import Debounce, OnCode, OnProblem, Worker, keep_open, no_problem_report
from drivers.framing import MAX_CODE
from drivers.specs import NfcSpec

log = logging.getLogger(__name__)

FIRST_DATA_PAGE = 4
"""NFC Forum Type 2 tags keep their TLVs from page 4 on (pages 0-3: UID, lock, CC)."""
MAX_PAGES = (MAX_CODE + 16) // 4
POLL_S = 0.2


class TagReader(Protocol):
    """The part of ``adafruit_pn532.PN532`` the kiosk uses."""

    def SAM_configuration(self) -> None:
        """Put the PN532 in normal mode, ready to read tags."""

    def read_passive_target(self, card_baud: int = 0, timeout: float = 1) -> bytes | None:
        """The UID of a tag in the field, waiting up to ``timeout``; None when there is none."""

    def ntag2xx_read_block(self, block_number: int) -> bytes | None:
        """The 4 bytes of one page of an NTAG2xx tag, or None."""


class NdefError(ValueError):
    """The tag memory does not hold a well-formed NDEF message."""


def ndef_message(memory: bytes) -> bytes | None:
    """The NDEF message in Type 2 tag memory (from page 4), or None when it is incomplete yet.

    Raises :class:`NdefError` when there is none or it is malformed.
    """
    at = 0
    while at < len(memory):
        tag = memory[at]
        if tag == 0x00:  # NULL TLV: padding
            at += 1
            continue
        if tag == 0xFE:  # terminator before any NDEF message
            raise NdefError("no NDEF message")
        if at + 1 >= len(memory):
            return None
        length, header = memory[at + 1], 2
        if length == 0xFF:  # three-byte length format
            if at + 3 >= len(memory):
                return None
            length, header = int.from_bytes(memory[at + 2:at + 4], "big"), 4
        if tag == 0x03:
            if length > MAX_CODE + 16:
                raise NdefError("NDEF message too long for a member code")
            end = at + header + length
            return memory[at + header:end] if end <= len(memory) else None
        at += header + length  # lock/memory control or proprietary TLV: skip it
    return None


def ndef_text(message: bytes) -> str:
    """The text of the first NDEF text record ("T", well-known type) in ``message``."""
    at = 0
    while at < len(message):
        flags = message[at]
        if flags & 0x20:
            raise NdefError("chunked records are not used by member cards")
        short = bool(flags & 0x10)
        has_id = bool(flags & 0x08)
        need = 3 if short else 6
        if at + need + has_id > len(message):
            raise NdefError("record header cut short")
        type_length = message[at + 1]
        if short:
            payload_length, at = message[at + 2], at + 3
        else:
            payload_length, at = int.from_bytes(message[at + 2:at + 6], "big"), at + 6
        id_length = message[at] if has_id else 0
        at += has_id
        kind = message[at:at + type_length]
        payload = message[at + type_length + id_length:
                          at + type_length + id_length + payload_length]
        at += type_length + id_length + payload_length
        if at > len(message):
            raise NdefError("record cut short")
        if flags & 0x07 == 0x01 and kind == b"T" and payload:
            status = payload[0]
            language = status & 0x3F
            encoding = "utf-16" if status & 0x80 else "utf-8"
            if 1 + language > len(payload):
                raise NdefError("text record cut short")
            return payload[1 + language:].decode(encoding, errors="replace")
        if flags & 0x40:  # message end
            break
    raise NdefError("no text record")


def ndef_text_memory(text: str, language: str = "en") -> bytes:
    """Type 2 tag memory (from page 4) holding one NDEF text record: what a card writer puts on."""
    payload = bytes([len(language)]) + language.encode() + text.encode()
    if len(payload) < 256:
        record = bytes([0xD1, 1, len(payload)]) + b"T" + payload  # MB ME SR, well-known
    else:
        record = bytes([0xC1, 1]) + len(payload).to_bytes(4, "big") + b"T" + payload
    size = bytes([len(record)]) if len(record) < 0xFF else b"\xff" + len(record).to_bytes(2, "big")
    memory = b"\x03" + size + record + b"\xfe"
    return memory + b"\x00" * (-len(memory) % 4)


def read_tag_code(reader: TagReader, uid: bytes) -> str | None:
    """What a tapped tag stands for: its NDEF text, else ``uid:`` and its UID in hex.

    None when the tag was lifted in the middle of its message: nothing is handed
    up, and the next poll reads it again if it is still there.
    """
    memory = b""
    try:
        for page in range(FIRST_DATA_PAGE, FIRST_DATA_PAGE + MAX_PAGES):
            block = reader.ntag2xx_read_block(page)
            if block is None:
                if memory and memory.lstrip(b"\x00")[:1] == b"\x03":
                    return None  # an NDEF message cut short
                if not memory and _gone(reader, uid):
                    return None  # lifted before its first page was read
                break  # not an NTAG, or no message: its UID is what we have
            memory += bytes(block)
            message = ndef_message(memory)
            if message is not None:
                return ndef_text(message)
    except NdefError as exc:
        log.debug("tag without a usable NDEF text (%s); using its UID", exc)
    return "uid:" + bytes(uid).hex().upper()


def _gone(reader: TagReader, uid: bytes) -> bool:
    """True when the tag with ``uid`` is no longer in the field (a MIFARE Classic still is)."""
    again = reader.read_passive_target(timeout=0.05)
    return again is None or bytes(again) != uid


def open_pn532(spec: NfcSpec) -> TagReader:
    """Adafruit's PN532 driver on I2C (Blinka's ``busio``) or on a UART (pyserial)."""
    try:
        if spec.interface == "uart":
            import serial
            from adafruit_pn532.uart import PN532_UART

            uart = serial.Serial(spec.port, baudrate=115200, timeout=0.1)
            return PN532_UART(uart)  # type: ignore[no-any-return,unused-ignore]
        import board
        import busio
        from adafruit_pn532.i2c import PN532_I2C

        return PN532_I2C(busio.I2C(board.SCL, board.SDA))  # type: ignore[no-any-return,unused-ignore]
    except ImportError as exc:
        raise DriverUnavailable("the PN532 library is not installed: "
                                "pip install adafruit-circuitpython-pn532") from exc


class NfcCodeSource:
    """A :class:`~drivers.base.CodeSource` polling a PN532 for tags (``source: nfc``)."""

    frames_decoded = 0  # no camera frames: a reader of codes, see CodeSource

    def __init__(self, spec: NfcSpec, opener: Callable[[NfcSpec], TagReader] = open_pn532,
                 name: str = "nfc") -> None:
        self.name = name
        self._spec = spec
        self._opener = opener
        self._debounce = Debounce(spec.cooldown_s)
        self._worker: Worker | None = None

    def start(self, on_code: OnCode, on_problem: OnProblem = no_problem_report) -> None:
        """Start polling on a thread of its own; the reader is opened (and reopened) there."""
        self._worker = Worker(f"kiosk-{self.name}", lambda stop: keep_open(
            self.name, stop, on_problem, self._open,
            lambda reader: self._poll(reader, stop, on_code), lambda _reader: None))
        self._worker.start()

    def _open(self) -> TagReader:
        reader = self._opener(self._spec)
        reader.SAM_configuration()
        return reader

    def _poll(self, reader: TagReader, stopping: threading.Event, on_code: OnCode) -> None:
        while not stopping.is_set():
            uid = reader.read_passive_target(timeout=POLL_S)
            if uid is None:
                continue
            code = read_tag_code(reader, bytes(uid))
            if code is not None and self._debounce.accept(code):
                on_code(code, self.name, time.time())
            stopping.wait(POLL_S)  # a tag left lying there is looked at five times a second

    def stop(self, timeout: float = 2.0) -> None:
        """Stop polling."""
        if self._worker is not None:
            self._worker.stop(timeout)
