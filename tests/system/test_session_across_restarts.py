"""The kiosk's MQTT session outlives its process: a staff command sent while the daemon
restarts (a clean stop, or kill -9) is delivered when it is back, unless it expired.
The real ``kiosk run`` process on a real mosquitto."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.config import Config, TelemetrySection
from kiosk.mqtt import protocol
from kiosk.mqtt.client import session_kept
from kiosk.mqtt.envelope import target_for
from kiosk.mqtt.settings import MqttSettings
from kiosk.staff.client import StaffClient
from kiosk.testing.broker import Mosquitto
from kiosk.testing.daemon import start_daemon
from kiosk.testing.harness import sim_config
from kiosk.testing.staff import trusting
from kiosk.trust.signing import Signer

SITE, DEVICE = "shop-1", "kiosk-r"
TOPICS = protocol.Topics("loyalty", SITE, DEVICE)
TARGET = target_for(SITE, DEVICE)


class Daemon:
    """``kiosk run`` in a subprocess, started and stopped as systemd would."""

    def __init__(self, config: Config, path: Path) -> None:
        self._config, self._path = config, path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_daemon(self._config, self._path)

    def stop(self, how: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(how)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def daemon(tmp_path: Path, mosquitto: Mosquitto, staff_key: Signer) -> Iterator[Daemon]:
    config = sim_config(tmp_path / "state", mosquitto.port, device_id=DEVICE, site=SITE,
                        serial=False)
    config = trusting(replace(config, camera=replace(config.camera, backend="none"),
                              telemetry=TelemetrySection(interval_s=0)), staff_key)
    running = Daemon(config, tmp_path / "kiosk.toml")
    running.start()
    try:
        yield running
    finally:
        if running.process and running.process.poll() is None:
            running.stop(signal.SIGTERM)


def _listening(staff: StaffClient) -> None:
    """The kiosk reports its config right after subscribing: then the broker holds its
    subscriptions (and, from now on, its session)."""
    assert staff.wait(lambda: TOPICS.config_reported in staff.latest, 60), "never listened"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill-9"])
def test_a_command_sent_while_the_kiosk_restarts_arrives(daemon, staff, issuer, how):
    _listening(staff)
    daemon.stop(how)
    order, payload = issuer.command(TARGET, "ping")
    staff.send(TOPICS.command("ping"), payload)  # nobody is connected as the kiosk now
    daemon.start()
    found = staff.wait(lambda: staff.results_for(order.cmd_id), 60)
    assert found, "the command sent while the kiosk was down never arrived"
    assert found[0][1]["status"] == "ok"


def test_a_session_is_resumed_only_under_the_same_identity(tmp_path: Path):
    marker = tmp_path / "state" / "mqtt-session"
    broker = MqttSettings(host="broker-a", port=1883)
    assert not session_kept(marker, broker, "kiosk-1", SITE)  # first start: clean
    assert session_kept(marker, broker, "kiosk-1", SITE)  # a restart: resumed
    assert not session_kept(marker, replace(broker, host="broker-b"), "kiosk-1", SITE)
    assert not session_kept(marker, replace(broker, host="broker-b"), "kiosk-1", "shop-2")
    assert not session_kept(marker, replace(broker, host="broker-b"), "kiosk-2", "shop-2")
    assert session_kept(marker, replace(broker, host="broker-b"), "kiosk-2", "shop-2")
    tuned = replace(broker, host="broker-b", keepalive_s=60, reconnect_max_s=9.0)
    assert session_kept(marker, tuned, "kiosk-2", "shop-2")  # tuning is not identity
