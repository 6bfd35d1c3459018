"""Shared by every test: the ``system`` marker for everything under ``tests/system``, and the
shipped systemd unit read as settings (its file is tested by unit and system tests alike).

The fixtures integrators also use (``mosquitto``, ``kiosk``, ``backend``, ``staff_key``...)
come from the ``kiosk`` pytest plugin (:mod:`kiosk.testing.plugin`); those only the system
tests share are in ``system/conftest.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.ops.logs import HANDLER_NAME
from tests import UNIT

SYSTEM = Path(__file__).resolve().parent / "system"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by place, not by hand: a test is a system test because of where it lives, so
    ``pytest -m "not system"`` runs the fast ones and no test can forget its marker."""
    for item in items:
        if item.path.is_relative_to(SYSTEM):
            item.add_marker(pytest.mark.system)


@pytest.fixture(autouse=True)
def kiosk_logging_ends_with_its_test() -> Iterator[None]:
    """A test that runs ``kiosk.cli.main`` sets the kiosk's log handler up on the stdout
    of that moment (pytest's capture); left in place, every later record in the process
    went to a closed file or into another test's output (a kioskctl ``--json`` line)."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def unit_settings() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit; repeated keys (``DeviceAllow=``) keep every value."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings
