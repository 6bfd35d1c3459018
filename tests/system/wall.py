"""The shipped broker config with TLS, as the broker-wall and staff-over-TLS tests run it.

Identities and helpers; the ``certs`` and ``wall`` fixtures built from them are in
``conftest.py``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kiosk.config import Config
from kiosk.testing.broker import Mosquitto, free_port, secure_drop_in
from kiosk.testing.harness import sim_config
from tests import ROOT

SHIPPED = ROOT / "config" / "mosquitto"
SITE = "test-shop"
A, B = "kiosk-a", "kiosk-b"
STAFF, BACKEND, FLEET = "staff:admin", "backend:loyalty", "fleet:main"


def shipped_broker(workdir: Path, files: Path) -> Mosquitto:
    """A started mosquitto with ``loyalty.conf`` as shipped, its certificates from ``files``."""
    port = free_port()
    drop_in = secure_drop_in((SHIPPED / "loyalty.conf").read_text(), files, port)
    broker = Mosquitto(workdir, port, drop_in=drop_in)
    broker.start()
    return broker


def tls_kiosk_config(tmp_path: Path, broker: Mosquitto, certs: Path, device: str) -> Config:
    """A simulated kiosk that reaches ``broker`` over TLS with its own certificate."""
    config = sim_config(tmp_path / device, broker.port, device_id=device, site=SITE)
    return replace(config, mqtt=replace(
        config.mqtt, host="localhost", tls=True, ca_file=str(certs / "ca.crt"),
        cert_file=str(certs / f"{device}.crt"), key_file=str(certs / f"{device}.key")))
