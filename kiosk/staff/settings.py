"""kioskctl's own config file: how staff reach the broker and which key signs.

Read from ``--config``, else ``$KIOSKCTL_CONFIG``, else ``~/.config/kioskctl.toml``
(a missing file means the defaults). ``[mqtt]`` takes the same keys, checked the
same way, as a kiosk's ``[mqtt]`` (``config/kioskctl.toml`` shows them all).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.config import ConfigError, MqttSection, build

DEFAULT_PATH = "~/.config/kioskctl.toml"


@dataclass(frozen=True)
class KeysSection:
    """Where the signing keys live and which one signs."""

    dir: str = "~/.config/kioskctl/keys"
    sign_with: str = ""
    """A key name in ``dir``; empty: the only private key there."""


@dataclass(frozen=True)
class StaffSettings:
    """Everything kioskctl reads from its config file."""

    mqtt: MqttSection = field(default_factory=MqttSection)
    keys: KeysSection = field(default_factory=KeysSection)


def settings_path(cli_path: str | None) -> Path:
    """``--config``, else ``$KIOSKCTL_CONFIG``, else the user's file."""
    return Path(cli_path or os.environ.get("KIOSKCTL_CONFIG") or DEFAULT_PATH).expanduser()


def load_settings(path: Path) -> StaffSettings:
    """Read ``path`` (defaults when it does not exist); :class:`ConfigError` if it is wrong."""
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except FileNotFoundError:
        return StaffSettings()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        settings: StaffSettings = build(StaffSettings, table, "")
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return settings
