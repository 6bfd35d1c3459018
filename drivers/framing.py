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

A frame a customer may be waiting on is handed up even when it cannot be a
code — not UTF-8, control characters, too long (cut at :data:`MAX_LINE`
bytes) — so the kiosk refuses it where the customer sees it ("Unreadable
code", "Code too long") and counts it. Only what no customer can be waiting on
is thrown away and counted in ``discarded``: the bytes of a line past the cut,
bytes outside an STX/ETX frame, and RDM6300 frames with a bad checksum (radio
noise while a tag moves). A burst of noise with no line end spoils the line it
runs into (refused as too long); the scan after it is read.
"""

from __future__ import annotations

from typing import Protocol

MAX_CODE = 512
"""A code longer than this (in characters) is refused; signed cards are ~120."""
MAX_LINE = 4 * (MAX_CODE + 1)
"""Bytes of one frame handed up at most: a code of ``MAX_CODE`` characters fits (UTF-8 takes
up to 4 bytes a character), and a frame cut here is always more than ``MAX_CODE`` characters,
so it is refused as too long whatever it holds."""

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

    def __init__(self, max_len: int = MAX_LINE) -> None:
        self._max_len = max_len
        self._pending = bytearray()
        self.discarded = 0

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by ``data`` (an over-long one cut at ``max_len`` bytes)."""
        frames = []
        for byte in data:
            if byte in (CR, LF):
                line = bytes(self._pending).strip(WRAPPERS)
                if line:
                    frames.append(line)
                self._pending.clear()
            elif len(self._pending) < self._max_len:
                self._pending.append(byte)
            else:
                self.discarded += 1
        return frames


class StxEtxFramer:
    """Frames between STX and ETX; RDM6300 frames are checked and become ``uid:`` codes."""

    def __init__(self, max_len: int = MAX_LINE) -> None:
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
            elif len(self._pending) < self._max_len:
                self._pending.append(byte)
            else:  # too long: handed up cut (and refused), the rest is noise until STX
                frames.append(bytes(self._pending))
                self.discarded += 2  # the STX and this byte
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


def _is_hex(data: bytes) -> bool:
    return all(byte in b"0123456789abcdefABCDEF" for byte in data)


def make_framer(framing: str) -> Framer:
    """The framer called ``framing`` (``lines`` or ``stx-etx``)."""
    if framing == "stx-etx":
        return StxEtxFramer()
    return LineFramer()
