"""pytest fixtures for integrators (registered as the ``kiosk`` pytest plugin).

``mosquitto``      a private broker on a free loopback port (skips if mosquitto is missing)
``ledger``         the reference backend's ledger, in a temporary SQLite file
``postgres``       a private PostgreSQL server for the session (skips if it is not installed)
``postgres_url``   a fresh, empty database on ``postgres`` for one test (its URL)
``backend``        the reference backend, connected to ``mosquitto``
``kiosk_config``   a config with every device simulated, talking to ``mosquitto``
``kiosk``          a running kiosk (:class:`~kiosk.testing.harness.RunningKiosk`)
``staff_key``      a staff signing key (:class:`~kiosk.trust.signing.Signer`)
``issuer``         seals orders with ``staff_key`` (:class:`~kiosk.staff.issuer.Issuer`)
``staff``          staff's MQTT client on ``mosquitto`` (:class:`~kiosk.staff.client.StaffClient`)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from backend import Ledger, LoyaltyBackend
from kiosk.config import Config, MqttSection
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import Issuer
from kiosk.testing.broker import Mosquitto, find_mosquitto
from kiosk.testing.harness import RunningKiosk, sim_config
from kiosk.testing.postgres import PostgresServer, find_pg_bin
from kiosk.trust.signing import Signer


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server, started once for the session (a few seconds)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="pip install 'loyalty-kiosk[backend]'")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database on ``postgres``, dropped after the test."""
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a ledger lives, once for each store: a SQLite file, then a PostgreSQL
    database (tests taking it run against both)."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return cast(str, request.getfixturevalue("postgres_url"))


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


@pytest.fixture
def staff_key() -> Signer:
    """A new staff signing key."""
    return Signer.generate()


@pytest.fixture
def issuer(staff_key: Signer) -> Issuer:
    """Seals orders signed by ``staff_key``."""
    return Issuer(staff_key)


@pytest.fixture
def staff(mosquitto: Mosquitto) -> Iterator[StaffClient]:
    """Staff's client, subscribed to what every kiosk says."""
    client = StaffClient(MqttSection(host=mosquitto.host, port=mosquitto.port)).connect()
    try:
        yield client
    finally:
        client.close()
