"""Every screen in every layout and language, pixel for pixel against reference PNGs
(as luma's own tests do), and text that always fits.

After a deliberate change to a layout, regenerate the images, look at every changed
one (``git diff --stat tests/unit/reference``, open them) and commit them with the change:
``KIOSK_UPDATE_REFERENCES=1 .venv/bin/pytest tests/unit/test_screens.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import PointsEarned, RewardUnlocked, StaffInfo, Sync, Welcome
from kiosk.ui.catalogue import CATALOGUE, LOCALES, placeholders
from kiosk.ui.compose import compose
from kiosk.ui.fonts import Font, font
from kiosk.ui.layouts import layout_for
from kiosk.ui.page import BOLD_ROLES, Placed, Row, Text
from kiosk.ui.render import messages, render
from kiosk.ui.samples import LAYOUTS, SCREENS, SETTLED_FRAME, STORE
from kiosk.ui.text import Fitter, clean
from tests import ROOT

REFERENCE = Path(__file__).parent / "reference" / "screens"
CASES = [(layout, locale, screen) for layout in LAYOUTS for locale in LOCALES
         for screen in SCREENS]


def _render(layout: str, locale: str, screen: str) -> Image.Image:
    return render(SCREENS[screen], LAYOUTS[layout], locale=locale, store=STORE,
                  frame=SETTLED_FRAME)


@pytest.mark.parametrize(("layout", "locale", "screen"), CASES)
def test_screen_matches_its_reference(layout, locale, screen):
    image = _render(layout, locale, screen)
    assert image.size == LAYOUTS[layout].size and image.mode == LAYOUTS[layout].mode
    path = REFERENCE / layout / locale / f"{screen}.png"
    if os.environ.get("KIOSK_UPDATE_REFERENCES"):
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    with Image.open(path) as reference:
        assert reference.mode == image.mode and reference.tobytes() == image.tobytes()


def test_every_reference_image_belongs_to_a_screen():
    expected = {REFERENCE / layout / locale / f"{screen}.png" for layout, locale, screen in CASES}
    assert set(REFERENCE.rglob("*.png")) == expected


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_screens_say_different_things(layout):
    rendered = {_render(layout, "en", screen).tobytes() for screen in SCREENS}
    assert len(rendered) >= len(SCREENS) - 2  # on 128x32 two celebrations may look alike


@pytest.mark.parametrize(("layout", "locale", "screen"), CASES)
def test_every_line_fits_its_display(layout, locale, screen):
    chosen = LAYOUTS[layout]
    page = compose(SCREENS[screen], messages(locale), STORE, SETTLED_FRAME)
    blocks = [*page.blocks, *([page.banner] if page.banner else [])]
    for block in blocks:
        placed = Placed(block, chosen, chosen.width)
        parts = placed.stacked or [placed]
        for part in parts:
            texts = [part.block.left, part.block.right] if isinstance(part.block, Row) \
                else [part.block] * len(part.lines)
            for text, line in zip(texts, part.lines, strict=False):
                if isinstance(text, Text):
                    face = _face_of(chosen, part.role or text.role)
                    assert face.getlength(line) <= chosen.width, (line, layout)


def _face_of(layout, role: str) -> Font:
    return font(layout.sizes[role], bold=role in BOLD_ROLES)


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_text_is_laid_out_the_same_whatever_the_system_has(layout):
    """Pillow lays text out with Raqm when the system has libfribidi and places glyphs
    differently then; the kiosk pins the basic engine so a Pi draws what these tests saw."""
    for role in layout.sizes:
        assert _face_of(layout, role).layout_engine == ImageFont.Layout.BASIC, role


def test_turkish_letters_are_drawn_not_replaced():
    layout = layout_for((256, 64), "mono")
    face = _face_of(layout, "big")
    missing = Image.new("1", (40, 30))
    ImageDraw.Draw(missing).text((2, 2), "\U000f0000", font=face, fill=1)
    for letter in "ıİşŞğĞçÇöÖüÜ✓★":
        image = Image.new("1", (40, 30))
        ImageDraw.Draw(image).text((2, 2), letter, font=face, fill=1)
        assert image.getbbox() and image.tobytes() != missing.tobytes(), letter


def test_catalogues_have_the_same_messages_and_placeholders():
    english = CATALOGUE["en"]
    for locale, texts in CATALOGUE.items():
        assert texts.keys() == english.keys(), locale
        for key, text in texts.items():
            assert placeholders(text) == placeholders(english[key]), (locale, key)


def test_numbers_are_grouped_the_local_way():
    assert messages("en")("points", points=999_999_999) == "999,999,999 pts"
    assert messages("tr")("points", points=1230) == "1.230 puan"


class CountingMeasure:
    """A font's ``getlength`` that counts what it was asked, and gives up past a budget."""

    def __init__(self, face: Font, budget: int = 100_000) -> None:
        self.face = face
        self.calls = 0
        self.chars = 0
        self.budget = budget

    def __call__(self, text: str) -> float:
        self.calls += 1
        self.chars += len(text)
        if self.chars > self.budget:
            raise AssertionError(f"measured {self.chars} characters: fitting is not linear")
        return self.face.getlength(text)


@pytest.mark.parametrize("length", [200, 200_000])
def test_fitting_measures_a_bounded_amount_whatever_the_length(length):
    face = _face_of(layout_for((128, 64), "mono"), "body")
    name = ("Ayşe Çağlayan " * (length // 14 + 1))[:length]
    measure = CountingMeasure(face)
    fitter = Fitter(face, measure)
    line = fitter.fit(clean(name), 128)
    lines, whole = fitter.wrap(clean(name), 128, 3)
    assert line.endswith("…") and not whole and len(lines) == 3
    assert face.getlength(line) <= 128
    assert measure.calls < 80 and measure.chars < 400  # the same for 200 and 200,000


def test_a_200000_character_name_renders_with_bounded_measuring(monkeypatch):
    counted = {"chars": 0}
    original = Font.getlength

    def counting(self, text, *args, **kwargs):
        counted["chars"] += len(text)
        if counted["chars"] > 100_000:
            raise AssertionError("fitting is not linear in the text's length")
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(Font, "getlength", counting)
    huge = "Ğ" * 200_000
    status = MemberStatus(huge, 5, huge, 5, 0.5, reward_unlocked=huge, next_reward=huge,
                          points_earned=10, badge=huge)
    for screen in (Welcome(status, Sync.SYNCED), Welcome(status, Sync.PENDING),
                   RewardUnlocked(status), PointsEarned(status),
                   StaffInfo(huge, huge, huge, 1)):
        for layout in LAYOUTS.values():
            render(screen, layout, locale="tr", store=huge[:40])
    assert counted["chars"] < 100_000


def test_animated_screens_change_between_frames():
    for name in ("idle", "points-earned", "reward-unlocked", "staff-identify"):
        frames = {render(SCREENS[name], frame=frame).tobytes() for frame in range(4)}
        assert len(frames) > 1, name


def test_the_readmes_screen_pictures_are_up_to_date():
    """The README shows what the renderer draws today (``tools/screenshots.py`` remakes them)."""
    import importlib.util

    tool = ROOT / "tools" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("screenshots", tool)
    assert spec is not None and spec.loader is not None
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)
    docs = ROOT / "docs" / "screens"
    for layout_name, layout in LAYOUTS.items():
        for locale in LOCALES:
            with Image.open(docs / f"sheet-{layout_name}-{locale}.png") as shown:
                expected = screenshots.sheet(layout, locale)
                assert shown.convert("RGB").tobytes() == expected.tobytes(), layout_name
