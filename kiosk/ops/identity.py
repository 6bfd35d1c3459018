"""A device id that stays the same across reboots and re-installs of the SD card image."""

from __future__ import annotations

import re
import socket
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def default_device_id(cpuinfo: Path = Path("/proc/cpuinfo"),
                      machine_id: Path = Path("/etc/machine-id")) -> str:
    """``pi-<cpu serial>`` on a Raspberry Pi, else ``host-<machine-id prefix>``, else hostname.

    The Pi's CPU serial survives re-flashing the SD card, so a re-imaged kiosk
    keeps its identity (and its broker ACLs) without re-provisioning.
    """
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("Serial"):
                serial = line.split(":", 1)[1].strip().lstrip("0")
                if serial:
                    return f"pi-{serial}"
    except OSError:
        pass
    try:
        ident = machine_id.read_text().strip()
        if ident:
            return f"host-{ident[:12]}"
    except OSError:
        pass
    return _UNSAFE.sub("-", socket.gethostname())[:64] or "kiosk"
