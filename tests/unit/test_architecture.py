"""The layering rules of DESIGN.md, checked on the source so they cannot rot."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ROOT

HARDWARE = {"picamera2", "pyzbar", "serial", "luma", "gpiozero", "lgpio", "RPi", "smbus2",
            "spidev"}
PURE_CORE = ["counter.controller", "counter.screens", "store.outbox", "counter.members",
             "mqtt.protocol", "counter.events", "counter.checkin", "store.cache", "config"]


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "drivers").glob("*.py")), ids=lambda p: p.name)
def test_drivers_never_import_the_application(path):
    assert "kiosk" not in _imports(path)


@pytest.mark.parametrize("path", sorted((ROOT / "kiosk").rglob("*.py")), ids=lambda p: p.name)
def test_the_application_imports_no_hardware_library(path):
    assert not _imports(path) & HARDWARE


@pytest.mark.parametrize("name", PURE_CORE)
def test_the_core_imports_no_mqtt_client(name):
    assert "paho" not in _imports(ROOT / "kiosk" / f"{name.replace('.', '/')}.py")


def test_importing_the_core_loads_no_hardware_library_or_mqtt_client():
    modules = ", ".join(f"kiosk.{name}" for name in PURE_CORE)
    probe = (f"import sys, {modules}, drivers.factory; "
             "print(sorted({m.split('.')[0] for m in sys.modules}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    assert not set(ast.literal_eval(loaded)) & (HARDWARE | {"paho"})
