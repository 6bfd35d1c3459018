"""What Debian's mosquitto really needs of the broker's files (docs/secured-broker.md).

mosquitto 2.0, started as root (as Debian's systemd unit does), drops to the
``mosquitto`` user right after reading its config and before it loads the
certificates and the ACL (eclipse/mosquitto ``src/mosquitto.c``, main: "Drop
privileges permanently immediately after the config is loaded"). So key files
as ``tools/make-certs`` writes them (0600, yours) stop it with "Permission
denied", and the same files installed as the docs say (group ``mosquitto``,
0640, in a 0750 folder) work. Runs only as root on a machine with the
``mosquitto`` user (the Debian package makes it).
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from kiosk.mqtt.client import connect_now, make_client
from kiosk.mqtt.settings import MqttSettings
from kiosk.staff.certs import make_certs
from kiosk.testing.broker import find_mosquitto, free_port, secure_drop_in
from kiosk.testing.harness import wait_for
from tests import ROOT

FILES = ("ca.crt", "broker.crt", "broker.key", "loyalty.acl")


def _has_mosquitto_user() -> bool:
    try:
        grp.getgrnam("mosquitto")
    except KeyError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    find_mosquitto() is None or os.geteuid() != 0 or not _has_mosquitto_user(),
    reason="needs root, mosquitto and its user (Debian's mosquitto package)")


@pytest.fixture
def world() -> Iterator[Path]:
    """A folder the mosquitto user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="kiosk-debian-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _start(conf_dir: Path, files: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    conf = conf_dir / "mosquitto.conf"
    # Debian's mosquitto.conf, less its system paths: no `user` line, so as root it drops
    # to the mosquitto user as the packaged service does.
    conf.write_text("persistence false\nlog_dest stderr\n" + secure_drop_in(
        (ROOT / "config" / "mosquitto" / "loyalty.conf").read_text(), files, port))
    broker = subprocess.Popen([find_mosquitto() or "mosquitto", "-c", str(conf)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return broker, port


def test_keys_as_make_certs_writes_them_stop_mosquitto_and_installed_as_documented_work(world):
    pki = world / "pki"
    make_certs(pki, kiosks=["pi-1"], staff=["admin"], backends=["loyalty"])
    pki.chmod(0o755)  # only the files' own modes stand in the way
    broker, _port = _start(world, pki)
    out, _ = broker.communicate(timeout=30)
    assert broker.returncode != 0
    assert "Permission denied" in out and "broker.key" in out, out

    installed = world / "etc-mosquitto-loyalty"  # stands for /etc/mosquitto/loyalty
    subprocess.run(["install", "-d", "-m", "750", "-g", "mosquitto", str(installed)], check=True)
    subprocess.run(["install", "-m", "640", "-g", "mosquitto",
                    *(str(pki / name) for name in FILES), f"{installed}/"], check=True)
    broker, port = _start(world, installed)
    try:
        client = make_client(MqttSettings(
            host="localhost", port=port, tls=True, ca_file=str(pki / "ca.crt"),
            cert_file=str(pki / "pi-1.crt"), key_file=str(pki / "pi-1.key")), "pi-1")
        wait_for(lambda: _connects(client), 15, "a TLS client to connect")
        client.disconnect()
        client.loop_stop()
    finally:
        broker.terminate()
        out, _ = broker.communicate(timeout=30)
    assert "Permission denied" not in out, out


def _connects(client: mqtt.Client) -> bool:
    try:
        connect_now(client)
    except OSError:
        return False
    return True
