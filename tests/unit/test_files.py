"""Files replaced whole (``drivers.files``): the kiosk's config overlay and the simulated
devices' files share one helper, so both get the same guarantee."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from drivers.files import write_atomically
from drivers.sim import make_dummy_display
from drivers.specs import DisplaySpec


def test_a_file_is_replaced_whole_and_its_folder_made(tmp_path):
    path = tmp_path / "made" / "state.json"
    write_atomically(path, lambda file: file.write(b"old"))
    write_atomically(path, lambda file: file.write(b"new"))
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left


def test_a_failed_write_leaves_the_old_content(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def broken(file) -> None:
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, broken)
    assert path.read_bytes() == b"old"


def test_the_simulated_display_saves_each_frame_through_it(tmp_path: Path):
    png = tmp_path / "oled.png"
    device = make_dummy_display(DisplaySpec(backend="sim", sim_png=str(png)))
    device.display(Image.new("1", (device.width, device.height), 1))
    assert Image.open(png).size == (device.width, device.height)
    assert [p.name for p in tmp_path.iterdir()] == ["oled.png"]
