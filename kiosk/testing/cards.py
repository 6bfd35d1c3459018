"""Member cards as customers show them: real QR images, generated on the spot."""

from __future__ import annotations

from PIL import Image

from kiosk.ops.cards import qr_card

__all__ = ["blank_card", "qr_card"]


def blank_card(size: tuple[int, int] = (200, 200), shade: int = 255) -> Image.Image:
    """An image with no code on it at all (a thumb, a receipt)."""
    return Image.new("L", size, shade)
