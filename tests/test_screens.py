"""Every screen, pixel for pixel against reference PNGs (as luma's own tests do).

After a deliberate change to a layout, look at the new images and refresh them:
``KIOSK_UPDATE_REFERENCES=1 pytest tests/test_screens.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from kiosk.members import MemberStatus
from kiosk.screens import Idle, NotRecorded, Sync, UnknownCard, Welcome, render
from kiosk.testing.harness import same_pixels

REFERENCE = Path(__file__).parent / "reference"
ALICE = MemberStatus("Alice", 1230, "Gold", 20, 0.6)
SAMPLES = {
    "idle-online": Idle(online=True),
    "idle-offline": Idle(online=False),
    "welcome-waiting": Welcome(ALICE, Sync.WAITING),
    "welcome-synced": Welcome(ALICE, Sync.SYNCED),
    "welcome-pending-unknown-member": Welcome(None, Sync.PENDING),
    "welcome-reward": Welcome(MemberStatus("Bob", 50, "Bronze", 50, 0.0, "Free coffee"),
                              Sync.SYNCED),
    "welcome-long-name": Welcome(MemberStatus("Maximiliana-Josephine", 99999, "Platinum+",
                                              12345, 1.0), Sync.SYNCED),
    "unknown-card": UnknownCard(),
    "not-recorded": NotRecorded("outbox full"),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_screen_matches_its_reference(name):
    image = render(SAMPLES[name])
    assert image.size == (128, 64) and image.mode == "1"
    path = REFERENCE / f"{name}.png"
    if os.environ.get("KIOSK_UPDATE_REFERENCES"):
        image.save(path)
    with Image.open(path) as reference:
        assert same_pixels(image, reference)


def test_screens_say_different_things():
    rendered = {name: render(screen).tobytes() for name, screen in SAMPLES.items()}
    assert len(set(rendered.values())) == len(SAMPLES)


def test_other_display_sizes_render_without_error():
    for screen in SAMPLES.values():
        assert render(screen, (128, 32)).size == (128, 32)
        assert render(screen, (256, 64)).size == (256, 64)
