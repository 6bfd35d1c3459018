"""Fixtures several system test files share, beside those of the ``kiosk`` pytest plugin."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.mqtt.settings import MqttSettings
from kiosk.staff.certs import make_certs
from kiosk.staff.keyring import Keyring
from kiosk.staff.kioskctl import OK
from kiosk.testing.broker import Mosquitto
from kiosk.testing.fleet import SimulatedFleet
from kiosk.trust import pki
from tests.system.test_kioskctl import Staff
from tests.system.wall import SHIPPED, A, B, shipped_broker


@pytest.fixture
def intruder(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    """A bare MQTT client on the test broker: whoever may publish anything anywhere there."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-intruder")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA, broker, two kiosks, staff, backend, Home Assistant and the fleet service; the
    shipped ACL beside them."""
    directory = tmp_path_factory.mktemp("certs")
    make_certs(directory, kiosks=[A, B], staff=["admin"], backends=["loyalty"],
               home_assistants=["home"], fleet_services=["main"])
    shutil.copy(SHIPPED / "loyalty.acl", directory / "loyalty.acl")
    # The same CA, but a broker certificate for a name the clients do not use.
    wrong = directory / "wrong-name"
    wrong.mkdir()
    for name in ("ca.crt", "loyalty.acl"):
        shutil.copy(directory / name, wrong / name)
    ca = pki.load_pair(directory, "ca")
    pki.write_pair(wrong, "broker", pki.issue(ca, "broker", server_names=["broker.example"]))
    # A kiosk certificate from a CA the broker does not trust (the client trusts ours).
    stranger = directory / "stranger"
    make_certs(stranger, kiosks=[A])
    shutil.copy(directory / "ca.crt", stranger / "ca.crt")
    return directory


@pytest.fixture
def wall(tmp_path: Path, certs: Path) -> Iterator[Mosquitto]:
    """The broker as shipped: TLS, client certificates, the ACL."""
    broker = shipped_broker(tmp_path / "broker", certs)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kioskctl(tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture) -> Staff:
    """kioskctl on the test broker, with one signing key, ``alice`` (not the plugin's
    ``staff``, a bare staff connection)."""
    made = Staff(tmp_path, mosquitto, capsys)
    assert made("keys", "gen", "alice")[0] == OK
    return made


@pytest.fixture
def fleet_shape() -> dict[str, Any]:
    """How many simulated kiosks, on how many sites, which flaky: a test module overrides it."""
    return {"count": 30, "sites": 3, "per_connection": 10}


@pytest.fixture
def sim_fleet(tmp_path: Path, mosquitto: Mosquitto, kioskctl: Staff,
              fleet_shape: dict[str, Any]) -> Iterator[SimulatedFleet]:
    """A simulated fleet (:class:`SimulatedFleet`) trusting ``kioskctl``'s key."""
    trusted = (Keyring(kioskctl.keys).list()[0].public,)
    with SimulatedFleet(MqttSettings(host=mosquitto.host, port=mosquitto.port),
                        tmp_path / "fleet", trusted=trusted, rollback_after_s=2.0,
                        **fleet_shape) as simulated:
        yield simulated
