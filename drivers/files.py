"""Files replaced whole: a reader, or the next start after a power cut, sees the old or the new
content, never half of one.

It lives in ``drivers`` because the simulated devices write such files (the display's
PNG, the lights' state) and ``drivers`` may not import ``kiosk``; the kiosk's own
files (staff's config overlay) use the same helper, so there is one guarantee, not two.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object], *,
                     durable: bool = True) -> None:
    """Replace ``path`` with what ``write`` puts in a file: temp file, rename, so a reader sees
    the old file or the new one, never half of one. ``durable`` adds an fsync of the file
    and of the folder (made if missing), so the rename itself survives a power cut; a
    simulated device's picture of itself does not need that, and its two syncs a frame
    would compete with the outbox's commits for the disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("wb") as file:
        write(file)
        if durable:
            file.flush()
            os.fsync(file.fileno())
    os.replace(temp, path)
    if durable:
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make renames and deletions in ``folder`` durable (a rename is a change of the folder)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
