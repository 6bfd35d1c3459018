"""Making member cards: card-issuer keys, signed card codes, card images and printable sheets.

This runs on a staff machine, not on the kiosk: the card-issuer *private* key
stays there. Kiosks are given only the public key (``[members] card_keys``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

from kiosk import KioskError
from kiosk.counter.members import sign_card
from kiosk.trust.keys import write_private_key
from kiosk.trust.signing import SignatureError, Signer, public_key_text

DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi
CARD = (510, 322)  # 85.6 x 54 mm (ID-1, a bank card) at 150 dpi
MARGIN = 80


class CardError(KioskError, ValueError):
    """A card or sheet cannot be made; the text says why."""


def new_issuer_key(path: Path) -> str:
    """Make a card-issuer key, write the private key to ``path`` (mode 600, never over an
    existing file) and return the public key text for the kiosks' config."""
    issuer = Signer.generate()
    try:
        write_private_key(path, f"{issuer.text()}\n".encode())
    except FileExistsError:
        raise CardError(f"{path} exists; a card-issuer key is never overwritten") from None
    return public_key_text(issuer.public)


def load_issuer_key(path: Path) -> Signer:
    """The card-issuer key written by :func:`new_issuer_key`."""
    try:
        return Signer.from_text(path.read_text())
    except (OSError, SignatureError, ValueError) as exc:
        raise CardError(f"{path}: not a card-issuer key ({exc})") from None


def card_code(member_id: str, issuer: Signer | None) -> str:
    """What a member's QR code holds: a signed card when there is an issuer key, else the id."""
    if issuer is None:
        return member_id
    try:
        return sign_card(issuer, member_id)
    except ValueError as exc:
        raise CardError(f"{member_id!r}: {exc}") from None


def qr_card(text: str, module_px: int = 4) -> Image.Image:
    """A grayscale image of a QR code holding ``text``, as printed on a card or shown on a phone."""
    code = qrcode.QRCode(border=4, box_size=module_px,
                         error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    return code.make_image(fill_color="black", back_color="white").get_image().convert("L")


def card_image(code: str, caption: str) -> Image.Image:
    """A card the size of a bank card: the QR code, and the member id printed under it."""
    card = Image.new("L", CARD, 255)
    qr = qr_card(code, module_px=4)
    qr.thumbnail((CARD[1] - 40, CARD[1] - 40))
    card.paste(qr, (20, (CARD[1] - qr.height) // 2))
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default(size=28)
    draw.text((qr.width + 40, CARD[1] // 2 - 20), caption[:16], fill=0, font=font)
    draw.rectangle((0, 0, CARD[0] - 1, CARD[1] - 1), outline=160)  # cutting line
    return card


def sheet_pages(member_ids: list[str], issuer: Signer | None) -> Iterator[Image.Image]:
    """A4 pages of cards, two across and five down, ready to print at 150 dpi and cut."""
    across = (PAGE[0] - 2 * MARGIN) // CARD[0]
    down = (PAGE[1] - 2 * MARGIN) // CARD[1]
    per_page = across * down
    for start in range(0, len(member_ids), per_page):
        page = Image.new("L", PAGE, 255)
        for n, member_id in enumerate(member_ids[start:start + per_page]):
            x = MARGIN + (n % across) * CARD[0]
            y = MARGIN + (n // across) * CARD[1]
            page.paste(card_image(card_code(member_id, issuer), member_id), (x, y))
        yield page


def write_sheet(member_ids: list[str], issuer: Signer | None, out: Path) -> int:
    """Write the sheet as a PDF (every page) or a PNG (one page); return the page count."""
    if not member_ids:
        raise CardError("no member ids to print")
    pages = list(sheet_pages(member_ids, issuer))
    suffix = out.suffix.lower()
    if suffix == ".pdf":
        pages[0].save(out, "PDF", resolution=DPI, save_all=True, append_images=pages[1:])
    elif suffix == ".png":
        if len(pages) > 1:
            raise CardError(f"{len(member_ids)} cards need {len(pages)} pages: write a .pdf")
        pages[0].save(out, "PNG", dpi=(DPI, DPI))
    else:
        raise CardError(f"{out}: a sheet is a .pdf or a .png")
    return len(pages)


def read_member_ids(path: Path) -> list[str]:
    """Member ids, one a line; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"{path}: cannot read ({exc})") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
