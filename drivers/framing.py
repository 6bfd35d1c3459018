"""Cutting a reader's byte stream into codes: pure, so every framing is fuzz-tested.

Two framings cover the common readers:

* ``lines`` — USB/TTL QR and barcode scanners: a code ends at CR, LF or CRLF
  (whatever the scanner is set to), so the kiosk need not be told which. NUL,
  STX or ETX around a code (some scanners add them) are taken off.
* ``stx-etx`` — 125 kHz RFID modules such as the RDM6300: STX (0x02), ten ASCII
  hex digits (version + 32-bit tag id), two hex digits of XOR checksum, ETX
  (0x03). A frame with a good checksum gives the tag id as ``"uid:"`` and ten
  upper-case hex digits; a bad checksum is line noise and is dropped. Other
  STX/ETX readers (no checksum) hand up what is between the markers.

Noise is never a code: an over-long frame, a line that is not UTF-8 text or
holds control characters (binary garbage), bytes outside an STX/ETX frame and
RDM6300 frames with a bad checksum are discarded and counted, and reading goes
on with the next frame. A burst of noise with no line end spoils the line it
runs into; the scan after it is read.
"""

from __future__ import annotations

from typing import Protocol

MAX_CODE = 512
"""A frame longer than this is noise, not a member code (signed cards are ~120 bytes)."""

STX, ETX, LF, CR = 0x02, 0x03, 0x0A, 0x0D
WRAPPERS = b"\x00\x02\x03"
"""NUL, STX and ETX some line scanners put around a code: not part of it."""


class Framer(Protocol):
    """Turns bytes as they arrive into whole frames."""

    discarded: int
    """Bytes thrown away as noise so far."""

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data`` (possibly none)."""


class LineFramer:
    """Codes ending in CR, LF or CRLF; empty lines (the LF of a CRLF) are skipped."""

    def __init__(self, max_len: int = MAX_CODE) -> None:
        self._max_len = max_len
        self._pending = bytearray()
        self._overflow = False  # inside a line that is already too long
        self.discarded = 0

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by ``data``."""
        frames = []
        for byte in data:
            if byte in (CR, LF):
                if self._pending and not self._overflow:
                    line = bytes(self._pending).strip(WRAPPERS)
                    if _is_text(line):
                        if line:
                            frames.append(line)
                    else:
                        self.discarded += len(line)
                self._pending.clear()
                self._overflow = False
            elif self._overflow:
                self.discarded += 1
            else:
                self._pending.append(byte)
                if len(self._pending) > self._max_len:
                    self.discarded += len(self._pending)
                    self._pending.clear()
                    self._overflow = True
        return frames


class StxEtxFramer:
    """Frames between STX and ETX; RDM6300 frames are checked and become ``uid:`` codes."""

    def __init__(self, max_len: int = MAX_CODE) -> None:
        self._max_len = max_len
        self._pending: bytearray | None = None  # None: outside a frame
        self.discarded = 0

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data``."""
        frames = []
        for byte in data:
            if byte == STX:
                if self._pending is not None:  # a frame cut short by a new one
                    self.discarded += len(self._pending) + 1
                self._pending = bytearray()
            elif self._pending is None:
                self.discarded += 1  # noise between frames
            elif byte == ETX:
                frame = self._finish(bytes(self._pending))
                self._pending = None
                if frame:
                    frames.append(frame)
            else:
                self._pending.append(byte)
                if len(self._pending) > self._max_len:
                    self.discarded += len(self._pending) + 1
                    self._pending = None
        return frames

    def _finish(self, body: bytes) -> bytes:
        if len(body) == 12 and _is_hex(body):  # an RDM6300 tag: check it
            values = bytes.fromhex(body.decode("ascii"))
            checksum = 0
            for value in values[:5]:
                checksum ^= value
            if checksum != values[5]:
                self.discarded += len(body) + 2
                return b""
            return b"uid:" + body[:10].upper()
        return body


def _is_text(line: bytes) -> bool:
    """UTF-8 without control characters: binary garbage is not a code, whatever it says."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def _is_hex(data: bytes) -> bool:
    return all(byte in b"0123456789abcdefABCDEF" for byte in data)


def make_framer(framing: str) -> Framer:
    """The framer called ``framing`` (``lines`` or ``stx-etx``)."""
    if framing == "stx-etx":
        return StxEtxFramer()
    return LineFramer()
