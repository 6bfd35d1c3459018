"""Where releases live on a kiosk, and the two small files the kiosk and its updater share.

The layout (under ``/``, or a scratch root in tests)::

    /opt/kiosk/releases/<version>/   one venv per release; ``.complete`` once installed
    /opt/kiosk/current  -> releases/<version>   what kiosk.service runs (switched by rename)
    /opt/kiosk/committed -> releases/<version>  the last release that proved healthy
    /opt/kiosk/release.json          the updater's report: running, trying, last failure
    /opt/kiosk/work.json             the order the updater is carrying out (a crash leaves it)
    /var/lib/kiosk/update/request.json   the kiosk's request (the updater's path unit
                                          watches it); files/<version>/ the fetched wheels
    /run/kiosk/release-health.json   the kiosk's heartbeat while a release is on trial

``current != committed`` means a release is on trial: at boot, and before every run,
the updater switches back to ``committed`` (a power cut mid-trial boots the old one).
The kiosk only reads ``release.json`` and only writes its own state directory and
heartbeat; the updater trusts neither of the kiosk's files beyond what it re-verifies.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.files import write_atomically
from kiosk import KioskError
from kiosk.config import Config
from kiosk.trust.release import Release, version_key

REQUEST = "request.json"
MAX_JSON = 256 * 1024
"""Largest request, report or heartbeat read (a manifest is a few KiB)."""


class UpdateRefused(KioskError):
    """An update that is not carried out; nothing was changed. The text says why."""


@dataclass(frozen=True)
class Layout:
    """Every path of the release machinery, under one root."""

    root: Path
    state_dir: Path
    status_file: Path
    health_file: Path

    @classmethod
    def of(cls, config: Config, root: Path = Path("/")) -> Layout:
        """The layout a kiosk's config names, under ``root``."""
        def under(path: str) -> Path:
            return root / Path(path).relative_to("/") if Path(path).is_absolute() else Path(path)
        return cls(root, under(config.kiosk.state_dir), under(config.update.status_file),
                   under(config.update.health_file))

    @property
    def opt(self) -> Path:
        """Where the releases, the two links and the updater's files are."""
        return self.status_file.parent

    @property
    def releases(self) -> Path:
        return self.opt / "releases"

    @property
    def current(self) -> Path:
        return self.opt / "current"

    @property
    def committed(self) -> Path:
        return self.opt / "committed"

    @property
    def work(self) -> Path:
        return self.opt / "work.json"

    @property
    def spool(self) -> Path:
        """The kiosk's side: its request and the files it fetched."""
        return self.state_dir / "update"

    @property
    def request(self) -> Path:
        return self.spool / REQUEST

    def files(self, version: str) -> Path:
        """Where the kiosk puts the wheels of ``version`` it fetched."""
        return self.spool / "files" / version

    def linked(self, link: Path) -> str | None:
        """The version a link points at (None: no link)."""
        try:
            return Path(os.readlink(link)).name
        except OSError:
            return None


@dataclass(frozen=True)
class Status:
    """The updater's report, published by the kiosk as ``state.release``."""

    running: str | None = None
    trying: str | None = None
    last_failure: dict[str, str] | None = None
    """``{"version": …, "reason": …}`` of the last release switched back or refused."""

    def body(self) -> dict[str, Any]:
        return asdict(self)


def read_json(path: Path) -> Any:
    """A small JSON file, never through a symlink (the kiosk owns some of these folders);
    None when it is missing or not JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically (a power cut leaves the old or the new file)."""
    text = json.dumps(data, indent=1).encode()
    write_atomically(path, lambda file: file.write(text))


def read_status(path: Path) -> Status:
    """The updater's report; an empty one when there is none (a kiosk installed by hand)."""
    data = read_json(path)
    if not isinstance(data, dict):
        return Status()
    failure = data.get("last_failure")
    if not (isinstance(failure, dict) and isinstance(failure.get("version"), str)
            and isinstance(failure.get("reason"), str)):
        failure = None
    return Status(_text(data.get("running")), _text(data.get("trying")),
                  {"version": failure["version"][:40], "reason": failure["reason"][:200]}
                  if failure else None)


@dataclass(frozen=True)
class Heartbeat:
    """What the kiosk says about itself while it runs: the updater commits on it."""

    version: str
    pid: int
    connected: bool
    state: str
    at: float

    def fresh(self, now: float, stale_s: float) -> bool:
        return now - self.at < stale_s


def write_heartbeat(path: Path, version: str, connected: bool, state: str) -> None:
    """The kiosk's heartbeat (tmpfs: written every few seconds, never to the SD card)."""
    write_json(path, {"version": version, "pid": os.getpid(), "connected": connected,
                      "state": state, "at": time.time()})


def read_heartbeat(path: Path) -> Heartbeat | None:
    data = read_json(path)
    try:
        return Heartbeat(str(data["version"]), int(data["pid"]), data["connected"] is True,
                         str(data["state"])[:20], float(data["at"]))
    except (TypeError, KeyError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return value[:40] if isinstance(value, str) else None


def check_release(release: Release, running: str | None, downgrade: bool,
                  machine: str | None = None) -> None:
    """The rules every install obeys, checked by the kiosk and again by the updater:
    monotonic versions unless a downgrade is ordered, the manifest's minimum previous
    version, the kiosk's machine and Python. :class:`UpdateRefused` says which failed."""
    machine = machine or platform.machine()
    if machine not in release.machines:
        raise UpdateRefused(f"release {release.version} is for {', '.join(release.machines)}, "
                            f"not {machine}")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if release.python != python:
        raise UpdateRefused(f"release {release.version} is for Python {release.python}, "
                            f"this kiosk runs {python}")
    if running is None:
        return
    if release.version == running:
        raise UpdateRefused(f"release {running} is already running")
    if version_key(release.version) < version_key(running) and not downgrade:
        raise UpdateRefused(f"release {release.version} is older than {running} (a downgrade "
                            "needs an order that asks for one and update.allow_downgrade = "
                            "true in the kiosk's local config)")
    if version_key(running) < version_key(release.min_previous) and not downgrade:
        raise UpdateRefused(f"release {release.version} needs {release.min_previous} or newer "
                            f"first (running {running})")
