"""The real ``kiosk run`` daemon in a subprocess, as systemd runs it, for tests that
need ``kill -9``, signals or ``sd_notify``."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from kiosk.config import Config


def to_toml(config: Config) -> str:
    """The config as a TOML file that ``load_config`` reads back to an equal config."""
    lines: list[str] = []
    for section in fields(config):
        table = getattr(config, section.name)
        lines.append(f"[{section.name}]")
        lines += [f"{f.name} = {_value(getattr(table, f.name))}" for f in fields(table)]
        lines.append("")
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, tuple):
        return f"[{', '.join(_value(item) for item in value)}]"
    if is_dataclass(value):
        raise TypeError("nested tables are not used in the kiosk config")
    raise TypeError(f"cannot write {value!r} to TOML")


def start_daemon(config: Config, path: Path, env: dict[str, str] | None = None,
                 ) -> subprocess.Popen[bytes]:
    """Write ``config`` to ``path`` and start ``kiosk run --config path``."""
    path.write_text(to_toml(config))
    return subprocess.Popen([sys.executable, "-m", "kiosk.cli", "run", "--config", str(path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
