"""Fetching a release's files over HTTP(S) from the shop's server: resumable, bounded, checked.

Why HTTP and not the broker: a release with numpy, cryptography and Pillow is tens
of MB for each machine; the broker caps a packet at 64 KiB and its memory at 512 MiB
for a whole fleet's queues, so 1,000 kiosks fetching in chunks through it would crowd
out check-ins. Any web server (nginx, a NAS, ``python -m http.server``) serves
files with ``Range``, so a cut connection resumes where it stopped. The transport is
not trusted: each file's size and SHA-256 are in the signed manifest, and a file is
renamed into place only when every byte matches (the updater checks them again).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.request
from pathlib import Path

from kiosk import KioskError
from kiosk.trust.release import ReleaseFile, sha256_of

log = logging.getLogger(__name__)

MARGIN = 16 * 2**20
"""Free space left over after a download: the kiosk's database must still be able to grow."""
CHUNK = 256 * 1024
TIMEOUT_S = 30.0
ATTEMPTS = 5


class FetchError(KioskError):
    """The files could not be fetched whole; the text says why (what was fetched is kept)."""


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write under ``folder``."""
    info = os.statvfs(folder)
    return info.f_bavail * info.f_frsize


def fetch_all(base_url: str, files: list[ReleaseFile], folder: Path, *,
              attempts: int = ATTEMPTS, pause_s: float = 2.0) -> None:
    """Fetch ``files`` from ``base_url`` into ``folder``, resuming each cut transfer up to
    ``attempts`` times; raise :class:`FetchError` if one cannot be had whole."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = sum(file.size - _have(folder, file) for file in files)
    free = free_bytes(folder)
    if free < missing + MARGIN:
        raise FetchError(f"not enough space in {folder}: {free // 2**20} MiB free, "
                         f"{(missing + MARGIN) // 2**20} MiB needed")
    for file in files:
        for attempt in range(1, attempts + 1):
            try:
                fetch_one(base_url + file.name, file, folder)
                break
            except (OSError, http.client.HTTPException) as exc:  # cut, refused, timed out
                if attempt == attempts:
                    raise FetchError(f"{file.name}: {exc}") from None
                log.warning("%s: %s; resuming (attempt %d of %d)", file.name, exc, attempt + 1,
                            attempts)
                time.sleep(pause_s * attempt)


def fetch_one(url: str, file: ReleaseFile, folder: Path) -> None:
    """Fetch one file, resuming ``<name>.part``; rename it into place once size and SHA-256
    are those signed. OSError when the transfer is cut (call again to resume)."""
    final, part = folder / file.name, folder / f"{file.name}.part"
    if final.exists():
        if _have(folder, file) == file.size and sha256_of(final) == file.sha256:
            return
        final.unlink()  # rotted on the card, or another release's file of the same name
    digest, have = hashlib.sha256(), 0
    if part.exists():
        with part.open("rb") as old:
            while chunk := old.read(CHUNK):
                digest.update(chunk)
                have += len(chunk)
    if have >= file.size:  # whole but wrong, or longer than signed: start again
        part.unlink()
        digest, have = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        if have and response.status != 206:  # the server ignored Range: from the start
            digest, have = hashlib.sha256(), 0
        with part.open("ab" if have else "wb") as out:
            while chunk := response.read(min(CHUNK, file.size + 1 - have)):
                have += len(chunk)
                if have > file.size:
                    break
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        ended = response.length == 0  # the server sent all it said it would
    if have < file.size and not ended:
        raise ConnectionError(f"connection closed after {have} of {file.size} bytes")
    if have != file.size or digest.hexdigest() != file.sha256:
        part.unlink()
        raise FetchError(f"{file.name}: not the file the release signed (size or SHA-256 "
                         "differs); is the server serving another release?")
    os.replace(part, final)


def _have(folder: Path, file: ReleaseFile) -> int:
    """Bytes of ``file`` already here (whole, or a part from a transfer cut short)."""
    for path in (folder / file.name, folder / f"{file.name}.part"):
        try:
            return min(path.stat().st_size, file.size)
        except OSError:
            continue
    return 0
