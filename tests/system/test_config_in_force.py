"""The tools read the config in force, not the file alone: after staff move a running kiosk
to another broker with a signed config, ``kiosk status`` and ``kiosk doctor`` ask the broker
the kiosk uses now; ``kiosk selftest`` shows the screens in the language staff set."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk import cli
from kiosk.config import Config, MqttSection
from kiosk.ops import doctor, status
from kiosk.provisioning import overlay
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import Issuer
from kiosk.testing.broker import Mosquitto
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import RunningKiosk
from kiosk.testing.staff import reported, target_of, trusting, wait_listening
from kiosk.trust.signing import Signer


@pytest.fixture
def kiosk_config(kiosk_config: Config, staff_key: Signer) -> Config:
    """Anonymous on the broker, so ``kiosk status`` may ask it for the retained status."""
    return trusting(kiosk_config, staff_key)


@pytest.fixture
def broker_b(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker-b")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _move(kiosk: RunningKiosk, staff: StaffClient, issuer: Issuer, broker: Mosquitto) -> None:
    """Staff send the kiosk to ``broker``; returns once it reports from there (promoted)."""
    wait_listening(staff, kiosk)
    _, payload = issuer.config(target_of(kiosk), 1, {"mqtt": {"port": broker.port}})
    staff.send(kiosk.app.topics.config_desired, payload, retain=True)
    on_b = StaffClient(MqttSection(host=broker.host, port=broker.port)).connect()
    try:
        reported(on_b, kiosk, lambda body: body["version"] == 1)
    finally:
        on_b.close()


def test_status_and_doctor_ask_the_broker_staff_moved_the_kiosk_to(
        kiosk, staff, issuer, mosquitto, broker_b, tmp_path):
    _move(kiosk, staff, issuer, broker_b)
    mosquitto.stop()  # the file's broker is gone: only broker B can answer
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(kiosk.config))  # the local file, still naming the first broker
    assert f"port = {mosquitto.port}" in path.read_text()

    out = io.StringIO()
    assert status.main(str(path), out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[1] == "config   the file, with staff config version 1"
    assert lines[2] == "online   yes (retained status on 127.0.0.1)"
    assert lines[3] == "state    ready"

    out = io.StringIO()
    assert doctor.main(str(path), out) == 0, out.getvalue()
    text = out.getvalue()
    assert f"[ ok ] config: mqtt.port = {broker_b.port} (staff config version 1)" in text
    assert f"[ ok ] broker: 127.0.0.1:{broker_b.port} accepts connections" in text


def test_selftest_shows_the_screens_as_staff_set_them(kiosk_config, tmp_path, capsys):
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(kiosk_config))
    folder = overlay.folder_of(kiosk_config)
    overlay.write_trial(folder, overlay.Applied(2, "c2", {"ui": {"locale": "tr"}}))
    overlay.promote(folder)
    assert cli.main(["selftest", "--config", str(path), "--screen-s", "0",
                     "--pattern-s", "0"]) == 0
    assert "language tr" in capsys.readouterr().out
