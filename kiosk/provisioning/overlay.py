"""Config pushed by staff, kept as an overlay on the local file under ``<state_dir>/config/``.

The local file (``/etc/kiosk/kiosk.toml``) stays the base; staff's desired config
is a partial table (sections and keys to change) merged over it and checked by
the same strict loader. It lives in JSON files written atomically (temp file,
fsync, rename, fsync of the folder), so a power cut leaves the old or the new
file, never half of one:

``good.json``      the overlay in force that connected to the broker
``trial.json``     a new overlay being tried; ``trial.started`` marks that a start used it
``rejected.json``  the last desired config refused or rolled back, and why

A new config takes effect as a difference (``kiosk.provisioning.shadow``): the parts
whose settings changed take them or restart, in the running process; a change no part
can take running rebuilds the whole kiosk in-process (``kiosk.daemon.build.serve``).
If the process dies while trying a config, the next start finds ``trial.started`` and
rolls back before trying anything.

Two ways in: the daemon starts with :func:`startup` (which may try a trial, so it
writes); every tool that only looks (``kiosk doctor``, ``status``, ``selftest``,
``check-config``) asks :func:`in_force`, which reads the good overlay and writes nothing.
Both lay the good overlay over the file the same way, so the tools see the config
the daemon runs once a trial has connected.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.files import sync_folder, write_atomically
from kiosk.config import Config, build, load_config
from kiosk.provisioning.remote import REMOTE, local_only

log = logging.getLogger(__name__)

LOCAL_ONLY = local_only(Config)
"""Every key only the local file may set, and why (see :mod:`kiosk.provisioning.remote`)."""
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


@dataclass(frozen=True)
class InForce:
    """The config in force: the file plus the promoted (good) overlay, and where values came
    from. Staff may have moved the kiosk to another broker: tools must ask that one."""

    config: Config
    applied: Applied | None
    """The good overlay laid over the file; None: the file alone."""
    problem: str = ""
    """Why a good overlay on disk was left out (unreadable here, or no longer fits the file)."""

    def staff_values(self) -> list[str]:
        """One line per value staff set, e.g. ``mqtt.host = "broker-b" (staff config version
        7)``; every value not named comes from the file. Secrets only say whether they are set."""
        if self.applied is None:
            return []
        table = redacted(self.config)
        layer = f"staff config version {self.applied.version}"
        return [f"{section}.{key} = {json.dumps(table[section][key])} ({layer})"
                for section, values in self.applied.config.items() for key in values]


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
            local = key in table[section] and (section, key) not in REMOTE
            if local and value != table[section][key]:
                raise ValueError(f"{section}.{key}: can only be set in the local config file "
                                 f"({LOCAL_ONLY[section, key]})")
            table[section][key] = value
    return build(Config, table, "")


def redacted(config: Config) -> dict[str, Any]:
    """The config as staff may see it: secrets replaced by whether they are set."""
    table = asdict(config)
    for section, key in SECRETS:
        table[section][key] = "(set)" if table[section][key] else ""
    return table


def in_force(base: Config) -> InForce:
    """The config in force over the file ``base``: the good overlay laid over it, else the file
    alone (with the reason when a good overlay is there but cannot be used). Reads only: a
    trial is the daemon's business (:func:`startup`), never a looking tool's."""
    found = _parsed(folder_of(base) / "good.json")
    if isinstance(found, Applied):
        merged = _merged(base, found)
        if isinstance(merged, Config):
            return InForce(merged, found)
        found = merged
    return InForce(base, None, found or "")


def load_in_force(path: Path) -> InForce:
    """:func:`in_force` over the config file at ``path``; ConfigError when the file is wrong."""
    return in_force(load_config(path))


def startup(base: Config) -> Startup:
    """The config the daemon starts with: a trial overlay (marked as tried, or rolled back
    when a start already tried it), else the config in force (:func:`in_force`)."""
    folder = folder_of(base)
    good = in_force(base)
    if good.problem:
        log.error("%s", good.problem)
    rollback_after_s = good.config.staff.rollback_after_s
    trial = read(folder / "trial.json")
    if trial is not None:
        marker = folder / "trial.started"
        if marker.exists():
            roll_back(folder, "the kiosk stopped while trying it")
        else:
            trial_config = _merged(base, trial)
            if isinstance(trial_config, str):
                log.error("%s", trial_config)
                roll_back(folder, "it no longer fits the local config file")
            else:
                begin_trial(folder)
                return Startup(trial_config, trial, True, rollback_after_s)
    return Startup(good.config, good.applied, False, rollback_after_s)


def promote(folder: Path) -> None:
    """The trial config connected: it becomes the good one."""
    os.replace(folder / "trial.json", folder / "good.json")
    (folder / "trial.started").unlink(missing_ok=True)
    sync_folder(folder)


def roll_back(folder: Path, reason: str) -> None:
    """Give up the trial config: record why; the next start uses the good one."""
    trial = read(folder / "trial.json")
    log.error("config version %s rolled back: %s", trial.version if trial else "?", reason)
    record_rejection(folder, trial.version if trial else 0, trial.cmd_id if trial else "",
                     f"rolled back: {reason}")
    (folder / "trial.json").unlink(missing_ok=True)
    (folder / "trial.started").unlink(missing_ok=True)
    sync_folder(folder)


def record_rejection(folder: Path, version: int, cmd_id: str, reason: str) -> None:
    """Remember the last refused config so ``config/reported`` can say why after a restart."""
    body = {"version": version, "cmd_id": cmd_id, "reason": reason[:500]}
    _store(folder / "rejected.json", json.dumps(body).encode())


def rejection(folder: Path) -> dict[str, Any] | None:
    """The last refused config and why, if any."""
    try:
        body = json.loads((folder / "rejected.json").read_bytes())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def begin_trial(folder: Path) -> None:
    """The stored trial is being tried now, by a running process: if it stops before the
    trial connects, the next start rolls it back (as :func:`startup` marks it)."""
    _store(folder / "trial.started", b"")


def write_trial(folder: Path, applied: Applied) -> None:
    """Store a new overlay to be tried at the next start."""
    _store(folder / "trial.json", json.dumps(asdict(applied)).encode())
    (folder / "trial.started").unlink(missing_ok=True)


def read(path: Path) -> Applied | None:
    """An overlay file, or None when it is missing or unreadable (logged)."""
    found = _parsed(path)
    if isinstance(found, str):
        log.error("%s", found)
        return None
    return found


def _parsed(path: Path) -> Applied | str | None:
    """An overlay file; None when it is missing; why not when it cannot be read."""
    try:
        body = json.loads(path.read_bytes())
        return Applied(int(body["version"]), str(body["cmd_id"]), dict(body["config"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"ignoring unreadable config overlay {path}: {exc}"


def _merged(base: Config, applied: Applied) -> Config | str:
    """``applied`` over ``base``, or why it does not fit."""
    try:
        return merge(base, applied.config)
    except ValueError as exc:
        return f"config overlay version {applied.version} does not fit: {exc}"


def _store(path: Path, data: bytes) -> None:
    write_atomically(path, lambda file: file.write(data))
