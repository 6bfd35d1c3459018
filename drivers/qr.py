"""QR decoding of a grayscale plane, by zxing-cpp or zbar, behind one interface.

A plane is a 2-D ``uint8`` numpy array (rows x columns); it may be a view with a
row stride wider than its width (picamera2's lores Y plane, or a region of
interest cut out of it).

* :class:`ZxingDecoder` — zxing-cpp's Python binding (``zxingcpp``). Checked
  against zxing-cpp ``wrappers/python/zxing.cpp`` (commit 77dceca, wheel 3.1.1):
  ``read_barcodes`` takes a numpy array through nanobind's ``ndarray<ro>`` and
  builds an ``ImageView`` from its data pointer, row stride and pixel stride,
  so a strided view is read **in place**, and the GIL is released while it
  decodes. QR only; rotate/invert/downscale are options (off by default: a QR
  code is found at any angle anyway, and each option costs a full extra pass).
  Two passes: the fast global-histogram binarizer, then zxing's default
  local-average binarizer only when the first found nothing.
* :class:`ZbarDecoder` — zbar through pyzbar's ctypes wrapper, with one scanner
  kept enabled for QR only. zbar has no row stride: a C-contiguous plane is read
  in place, a strided view is copied first (one ``memcpy`` of the plane).

``make_decoder("auto")`` takes zxing-cpp when it is installed (about ten times
faster than zbar at the same read rate, see README's performance section), else
zbar. Both return the text of each code; bytes that are not UTF-8 become U+FFFD
so the member-code parser can refuse them with a reason.
"""

from __future__ import annotations

import ctypes
import importlib.util
from typing import Any, Protocol

from drivers import DriverError, DriverUnavailable

DECODERS = ("auto", "zxing", "pyzbar")
_Y800 = 0x30303859  # zbar fourcc 'Y800': 8-bit grayscale


class Decoder(Protocol):
    """Finds QR codes in a grayscale plane. One per thread."""

    name: str

    def decode(self, plane: Any) -> list[str]:
        """The text of every QR code in ``plane`` (a 2-D uint8 numpy array)."""

    def close(self) -> None:
        """Release what the decoder holds."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _check(plane: Any) -> None:
    if getattr(plane, "ndim", None) != 2 or getattr(plane, "dtype", None) != "uint8":
        raise DriverError("a frame must be a 2-D uint8 array (a grayscale plane)")
    if plane.strides[1] != 1:
        raise DriverError("a frame's pixels must be adjacent in each row")


class ZxingDecoder:
    """QR codes by zxing-cpp, reading the plane in place (see the module docstring)."""

    name = "zxing"

    def __init__(self, try_downscale: bool = False, try_invert: bool = False) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise DriverUnavailable("zxing-cpp is not installed: pip install zxing-cpp "
                                    '(or set camera.decoder = "pyzbar")') from exc
        self._zxing = zxingcpp
        # One global threshold first: about five times faster, and it reads most cards.
        # Where it finds nothing (uneven light, blur), zxing's default local-average
        # binarizer looks again, so nothing the default would read is missed.
        self._binarizers = (zxingcpp.Binarizer.GlobalHistogram, zxingcpp.Binarizer.LocalAverage)
        self._try_downscale = try_downscale
        self._try_invert = try_invert

    def decode(self, plane: Any) -> list[str]:
        """The text of every QR code in the plane."""
        _check(plane)
        zx = self._zxing
        for binarizer in self._binarizers:
            found = zx.read_barcodes(plane, formats=zx.BarcodeFormat.QRCode, try_rotate=False,
                                     try_downscale=self._try_downscale,
                                     try_invert=self._try_invert, binarizer=binarizer)
            if found:
                return [_text(code.bytes) for code in found]
        return []

    def close(self) -> None:
        """zxing-cpp keeps no state between calls."""


class ZbarDecoder:
    """QR codes by zbar with one QR-only scanner (``pyzbar.decode`` makes one per call)."""

    name = "pyzbar"

    def __init__(self) -> None:
        try:
            from pyzbar import wrapper
        except ImportError as exc:  # the zbar shared library is missing
            raise DriverUnavailable("zbar is not installed: apt install libzbar0") from exc
        self._zb = zb = wrapper
        self._scanner = zb.zbar_image_scanner_create()
        # Disable every symbology, then enable QR only: fewer false reads, less work.
        zb.zbar_image_scanner_set_config(self._scanner, 0, zb.ZBarConfig.CFG_ENABLE, 0)
        zb.zbar_image_scanner_set_config(
            self._scanner, zb.ZBarSymbol.QRCODE, zb.ZBarConfig.CFG_ENABLE, 1
        )

    def decode(self, plane: Any) -> list[str]:
        """The text of every QR code in the plane."""
        _check(plane)
        if not plane.flags["C_CONTIGUOUS"]:
            import numpy as np

            plane = np.ascontiguousarray(plane)
        height, width = plane.shape
        size = width * height
        zb = self._zb
        pointer = ctypes.c_void_p(plane.ctypes.data)  # the array stays alive: no copy
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
                codes.append(_text(ctypes.string_at(zb.zbar_symbol_get_data(symbol),
                                                    zb.zbar_symbol_get_data_length(symbol))))
                symbol = zb.zbar_symbol_next(symbol)
            return codes
        finally:
            zb.zbar_image_destroy(image)

    def close(self) -> None:
        """Free the scanner."""
        if self._scanner:
            self._zb.zbar_image_scanner_destroy(self._scanner)
            self._scanner = None

    def __del__(self) -> None:
        self.close()


def installed_decoders() -> list[str]:
    """The decoders this machine can run, fastest first."""
    found = []
    if importlib.util.find_spec("zxingcpp") is not None:
        found.append("zxing")
    try:
        from pyzbar import wrapper  # noqa: F401  (loads libzbar)

        found.append("pyzbar")
    except ImportError:
        pass
    return found


def make_decoder(name: str, try_downscale: bool = False, try_invert: bool = False) -> Decoder:
    """The decoder called ``name``; ``auto`` is the fastest one installed."""
    if name == "auto":
        # zxing-cpp when it is there, without loading zbar (and the dozen shared libraries
        # libzbar pulls in: X11, v4l, dbus, about 2 MiB) only to leave it unused.
        if importlib.util.find_spec("zxingcpp") is not None:
            name = "zxing"
        else:
            available = installed_decoders()
            if not available:
                raise DriverUnavailable(
                    "no QR decoder: pip install zxing-cpp, or apt install libzbar0")
            name = available[0]
    if name == "zxing":
        return ZxingDecoder(try_downscale=try_downscale, try_invert=try_invert)
    if name == "pyzbar":
        return ZbarDecoder()
    raise DriverError(f"unknown decoder {name!r} (expected one of {', '.join(DECODERS)})")
