"""pytest fixtures for integrators (registered as the ``kiosk`` pytest plugin).

``mosquitto``      a private broker on a free loopback port (skips if mosquitto is missing)
``ledger``         the reference backend's ledger, in a temporary SQLite file
``backend``        the reference backend, connected to ``mosquitto``
``kiosk_config``   a config with every device simulated, talking to ``mosquitto``
``kiosk``          a running kiosk (:class:`~kiosk.testing.harness.RunningKiosk`)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.backend import Ledger, LoyaltyBackend
from kiosk.config import Config
from kiosk.testing.broker import Mosquitto, find_mosquitto
from kiosk.testing.harness import RunningKiosk, sim_config


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private mosquitto, stopped after the test."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """The reference backend's ledger."""
    book = Ledger(tmp_path / "backend" / "ledger.db")
    try:
        yield book
    finally:
        book.close()


@pytest.fixture
def backend(mosquitto: Mosquitto, ledger: Ledger) -> Iterator[LoyaltyBackend]:
    """The reference loyalty backend, connected and subscribed."""
    service = LoyaltyBackend(mosquitto.host, mosquitto.port, ledger)
    service.start()
    try:
        if not service.connected.wait(10):
            raise TimeoutError("backend did not connect")
        yield service
    finally:
        service.stop()


@pytest.fixture
def kiosk_config(tmp_path: Path, mosquitto: Mosquitto) -> Config:
    """Every device simulated; state under ``tmp_path/kiosk``."""
    return sim_config(tmp_path / "kiosk", mosquitto.port)


@pytest.fixture
def kiosk(kiosk_config: Config) -> Iterator[RunningKiosk]:
    """A running kiosk; stopped (as by SIGTERM) after the test."""
    running = RunningKiosk(kiosk_config).start()
    try:
        yield running
    finally:
        running.stop()
