"""Member cards as customers show them: real QR images, generated on the spot."""

from __future__ import annotations

import qrcode
from PIL import Image


def qr_card(text: str, module_px: int = 4) -> Image.Image:
    """A grayscale image of a QR code holding ``text``, as printed on a card or shown on a phone."""
    code = qrcode.QRCode(border=4, box_size=module_px,
                         error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    return code.make_image(fill_color="black", back_color="white").get_image().convert("L")


def blank_card(size: tuple[int, int] = (200, 200), shade: int = 255) -> Image.Image:
    """An image with no code on it at all (a thumb, a receipt)."""
    return Image.new("L", size, shade)
