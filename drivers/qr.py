"""QR decoding of a grayscale frame with zbar (through pyzbar's ctypes wrapper).

``pyzbar.decode`` builds a new scanner, converts and copies the image on every
call. A camera decodes ten frames a second, so :class:`QrDecoder` keeps one
scanner enabled for QR only and hands zbar a pointer into the caller's buffer
(the Y plane of picamera2's YUV420 array, or a PIL image's bytes): no copy.
"""

from __future__ import annotations

import ctypes
from typing import Any

from pyzbar import wrapper as zb

from drivers import DriverError

_Y800 = 0x30303859  # fourcc 'Y800': 8-bit grayscale


class QrDecoder:
    """Decodes QR codes from 8-bit grayscale pixels. One per thread (zbar is not thread-safe)."""

    def __init__(self) -> None:
        self._scanner = zb.zbar_image_scanner_create()
        # Disable every symbology, then enable QR only: fewer false reads, less work.
        zb.zbar_image_scanner_set_config(self._scanner, 0, zb.ZBarConfig.CFG_ENABLE, 0)
        zb.zbar_image_scanner_set_config(
            self._scanner, zb.ZBarSymbol.QRCODE, zb.ZBarConfig.CFG_ENABLE, 1
        )

    def decode(self, pixels: Any, width: int, height: int) -> list[str]:
        """Return the text of every QR code in a frame.

        ``pixels`` is any buffer of ``width*height`` bytes, row-major: bytes, bytearray,
        or a C-contiguous numpy array (decoded in place).
        """
        size = width * height
        held = memoryview(pixels).nbytes
        if held < size:
            raise DriverError(f"frame holds {held} bytes, {width}x{height} needs {size}")
        if isinstance(pixels, bytes):
            pointer = ctypes.cast(ctypes.c_char_p(pixels), ctypes.c_void_p)  # no copy
        else:  # writable buffers (numpy arrays, bytearray): point into them, no copy
            pointer = ctypes.cast((ctypes.c_ubyte * size).from_buffer(pixels), ctypes.c_void_p)
        image = zb.zbar_image_create()
        try:
            zb.zbar_image_set_format(image, _Y800)
            zb.zbar_image_set_size(image, width, height)
            zb.zbar_image_set_data(image, pointer, size, None)
            if zb.zbar_scan_image(self._scanner, image) < 0:
                raise DriverError("zbar could not scan the frame")
            codes = []
            symbol = zb.zbar_image_first_symbol(image)
            while symbol:
                raw = ctypes.string_at(
                    zb.zbar_symbol_get_data(symbol), zb.zbar_symbol_get_data_length(symbol)
                )
                codes.append(raw.decode("utf-8", errors="replace"))
                symbol = zb.zbar_symbol_next(symbol)
            return codes
        finally:
            zb.zbar_image_destroy(image)

    def close(self) -> None:
        """Free the scanner."""
        if self._scanner:
            zb.zbar_image_scanner_destroy(self._scanner)
            self._scanner = None

    def __del__(self) -> None:
        self.close()
