"""Shared by every test: the ``system`` marker for everything under ``tests/system``, and the
shipped systemd unit read as settings (its file is tested by unit and system tests alike).

The fixtures integrators also use (``mosquitto``, ``kiosk``, ``backend``, ``staff_key``...)
come from the ``kiosk`` pytest plugin (:mod:`kiosk.testing.plugin`); those only the system
tests share are in ``system/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import UNIT

SYSTEM = Path(__file__).resolve().parent / "system"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by place, not by hand: a test is a system test because of where it lives, so
    ``pytest -m "not system"`` runs the fast ones and no test can forget its marker."""
    for item in items:
        if item.path.is_relative_to(SYSTEM):
            item.add_marker(pytest.mark.system)


@pytest.fixture
def unit_settings() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit; repeated keys (``DeviceAllow=``) keep every value."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings
