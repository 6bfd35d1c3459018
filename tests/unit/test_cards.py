"""Making member cards: issuer keys, signed cards a kiosk accepts, printable sheets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from drivers.qr import make_decoder
from kiosk.cli import main
from kiosk.counter.members import MemberCodes
from kiosk.trust.signing import Verifier


def _read_qr_codes(image: Image.Image) -> list[str]:
    return make_decoder("zxing").decode(np.asarray(image.convert("L")))


@pytest.fixture
def issuer(tmp_path, capsys):
    key = tmp_path / "issuer.key"
    assert main(["card-key", "--out", str(key)]) == 0
    public = capsys.readouterr().out.rsplit(": ", 1)[1].strip()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    return key, public


def test_a_signed_card_is_accepted_only_by_kiosks_trusting_its_issuer(tmp_path, issuer):
    key, public = issuer
    out = tmp_path / "card.png"
    assert main(["card", "M-42", "--key", str(key), "--out", str(out)]) == 0
    [code] = _read_qr_codes(Image.open(out))
    assert MemberCodes("", Verifier.from_texts([public])).parse(code, "camera") == "M-42"
    other = Verifier.from_texts(["A" * 43])
    assert MemberCodes("", other).parse(code, "camera") != "M-42"


def test_an_issuer_key_is_never_overwritten(issuer, capsys):
    key, _ = issuer
    assert main(["card-key", "--out", str(key)]) == 1
    assert "never overwritten" in capsys.readouterr().err


def test_a_sheet_of_signed_cards_prints_as_pdf_pages_or_one_png(tmp_path, issuer):
    key, public = issuer
    ids = tmp_path / "ids.txt"
    ids.write_text("# spring promotion\nM-1\nM-2\n\n" + "".join(f"M-{n}\n" for n in range(3, 13)))
    pdf = tmp_path / "sheet.pdf"
    assert main(["card", "--sheet", str(ids), "--key", str(key), "--out", str(pdf)]) == 0
    assert pdf.read_bytes().count(b"/Type /Page\n") == 2  # 12 cards, 10 a page
    png = tmp_path / "sheet.png"
    ids.write_text("M-1\nM-2\nM-3\n")
    assert main(["card", "--sheet", str(ids), "--key", str(key), "--out", str(png)]) == 0
    codes = MemberCodes("", Verifier.from_texts([public]))
    read = sorted(codes.parse(code, "camera") for code in _read_qr_codes(Image.open(png)))
    assert read == ["M-1", "M-2", "M-3"]
    ids.write_text("".join(f"M-{n}\n" for n in range(11)))
    assert main(["card", "--sheet", str(ids), "--out", str(png)]) == 1  # 2 pages: needs a PDF
