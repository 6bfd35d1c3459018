"""Config pushed by staff, kept as an overlay on the local file under ``<state_dir>/config/``.

The local file (``/etc/kiosk/kiosk.toml``) stays the base; staff's desired config
is a partial table (sections and keys to change) merged over it and checked by
the same strict loader. It lives in JSON files written atomically (temp file,
fsync, rename, fsync of the folder), so a power cut leaves the old or the new
file, never half of one:

``good.json``      the overlay in force that connected to the broker
``trial.json``     a new overlay being tried; ``trial.started`` marks that a start used it
``rejected.json``  the last desired config refused or rolled back, and why

A new config takes effect by restarting the kiosk's parts in-process (see
``kiosk.daemon.app.serve``): the running ``App`` stops as on SIGTERM and a new one is
built from the merged config. If the process dies while trying a config, the
next start finds ``trial.started`` and rolls back before trying anything.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kiosk.config import Config, build

log = logging.getLogger(__name__)

LOCAL_ONLY = {("kiosk", "device_id"), ("kiosk", "state_dir")}
"""Keys only the local file may set: changing them remotely would move the kiosk's identity
or lose its database."""
SECRETS = {("mqtt", "password")}


@dataclass(frozen=True)
class Applied:
    """One overlay: its version, the order that brought it, the sections it changes."""

    version: int
    cmd_id: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Startup:
    """What a kiosk starts with: the merged config and where it came from."""

    config: Config
    applied: Applied | None
    trial: bool
    """True when ``applied`` has not yet connected to the broker."""
    rollback_after_s: float
    """From the last good config: a trial config may not lengthen its own trial."""


def folder_of(base: Config) -> Path:
    """Where the overlay files of a kiosk live."""
    return Path(base.kiosk.state_dir) / "config"


def combine(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``later`` on ``earlier``, section by section: staff's changes accumulate."""
    combined = {section: dict(values) for section, values in earlier.items()}
    for section, values in later.items():
        if isinstance(values, dict) and isinstance(combined.get(section), dict):
            combined[section].update(values)
        else:
            combined[section] = values
    return combined


def merge(base: Config, overlay: dict[str, Any]) -> Config:
    """``base`` with ``overlay``'s keys replaced, checked like the file; ValueError if not."""
    table: dict[str, Any] = asdict(base)
    for section, values in overlay.items():
        if not isinstance(values, dict):
            raise ValueError(f"{section}: expected a table")
        if section not in table:
            raise ValueError(f"{section}: unknown section (known: {', '.join(table)})")
        for key, value in values.items():
            if (section, key) in LOCAL_ONLY and value != table[section].get(key):
                raise ValueError(f"{section}.{key}: can only be set in the local config file")
            table[section][key] = value
    return build(Config, table, "")


def redacted(config: Config) -> dict[str, Any]:
    """The config as staff may see it: secrets replaced by whether they are set."""
    table = asdict(config)
    for section, key in SECRETS:
        table[section][key] = "(set)" if table[section][key] else ""
    return table


def startup(base: Config) -> Startup:
    """The config to start with: a trial overlay, else the good one, else the file alone."""
    folder = folder_of(base)
    good = read(folder / "good.json")
    good_config = _merged(base, good) if good else None
    rollback_after_s = (good_config or base).staff.rollback_after_s
    trial = read(folder / "trial.json")
    if trial is not None:
        marker = folder / "trial.started"
        if marker.exists():
            roll_back(folder, "the kiosk stopped while trying it")
        else:
            trial_config = _merged(base, trial)
            if trial_config is None:
                roll_back(folder, "it no longer fits the local config file")
            else:
                write_atomically(marker, b"")
                return Startup(trial_config, trial, True, rollback_after_s)
    if good and good_config:
        return Startup(good_config, good, False, rollback_after_s)
    return Startup(base, None, False, rollback_after_s)


def promote(folder: Path) -> None:
    """The trial config connected: it becomes the good one."""
    os.replace(folder / "trial.json", folder / "good.json")
    (folder / "trial.started").unlink(missing_ok=True)
    _sync_folder(folder)


def roll_back(folder: Path, reason: str) -> None:
    """Give up the trial config: record why; the next start uses the good one."""
    trial = read(folder / "trial.json")
    log.error("config version %s rolled back: %s", trial.version if trial else "?", reason)
    record_rejection(folder, trial.version if trial else 0, trial.cmd_id if trial else "",
                     f"rolled back: {reason}")
    (folder / "trial.json").unlink(missing_ok=True)
    (folder / "trial.started").unlink(missing_ok=True)
    _sync_folder(folder)


def record_rejection(folder: Path, version: int, cmd_id: str, reason: str) -> None:
    """Remember the last refused config so ``config/reported`` can say why after a restart."""
    body = {"version": version, "cmd_id": cmd_id, "reason": reason[:500]}
    write_atomically(folder / "rejected.json", json.dumps(body).encode())


def rejection(folder: Path) -> dict[str, Any] | None:
    """The last refused config and why, if any."""
    try:
        body = json.loads((folder / "rejected.json").read_bytes())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def write_trial(folder: Path, applied: Applied) -> None:
    """Store a new overlay to be tried at the next start."""
    write_atomically(folder / "trial.json", json.dumps(asdict(applied)).encode())
    (folder / "trial.started").unlink(missing_ok=True)


def read(path: Path) -> Applied | None:
    """An overlay file, or None when it is missing or unreadable (logged)."""
    try:
        body = json.loads(path.read_bytes())
        return Applied(int(body["version"]), str(body["cmd_id"]), dict(body["config"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("ignoring unreadable config overlay %s: %s", path, exc)
        return None


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    _sync_folder(path.parent)


def _merged(base: Config, applied: Applied) -> Config | None:
    try:
        return merge(base, applied.config)
    except ValueError as exc:
        log.error("config overlay version %d does not fit: %s", applied.version, exc)
        return None


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
