"""The fleet service (kiosk-fleet) as a real process on a real mosquitto: kioskctl asks it
for the fleet's state and the audit log, and reads retained messages itself without it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.mqtt import protocol
from kiosk.staff.issuer import Issuer
from kiosk.staff.kioskctl import OK
from kiosk.testing.broker import Mosquitto
from kiosk.testing.fleet import device_name
from kiosk.testing.harness import wait_for
from kiosk.trust.signing import Signer
from tests.system.test_kioskctl import Staff

COUNT, SITES = 20, 2


@pytest.fixture
def fleet_shape() -> dict[str, Any]:
    return {"count": COUNT, "sites": SITES, "per_connection": 10}


class Service:
    """``kiosk-fleet serve`` in its own process, with its own database."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, kioskctl: Staff) -> None:
        self.db = tmp_path / "fleet" / "fleet.db"
        self.config = tmp_path / "kiosk-fleet.toml"
        self.config.write_text(f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                               f'[keys]\ndir = "{kioskctl.keys}"\n[service]\ndb = "{self.db}"\n')
        self._kioskctl = kioskctl
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Service:
        self.process = subprocess.Popen([sys.executable, "-m", "kiosk.staff.fleetd", "--config",
                                         str(self.config), "serve"], text=True)
        wait_for(lambda: "from the fleet service" in self._kioskctl("summary")[2], 20,
                 "the fleet service answering")
        return self

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        assert self.process.wait(20) == 0


@pytest.fixture
def service(tmp_path: Path, mosquitto: Mosquitto, kioskctl: Staff,
            sim_fleet: Any) -> Iterator[Service]:
    started = Service(tmp_path, mosquitto, kioskctl).start()
    try:
        yield started
    finally:
        started.stop()


def _audit(kioskctl: Staff, *argv: str) -> list[dict[str, Any]]:
    code, orders = kioskctl.json("audit", *argv)
    assert code == OK
    return orders  # type: ignore[return-value]


def _until(kioskctl: Staff, check: Callable[[list[dict[str, Any]]], bool],
           *argv: str) -> list[dict[str, Any]]:
    found: list[list[dict[str, Any]]] = []
    wait_for(lambda: check(found.append(_audit(kioskctl, *argv)) or found[-1]), 20,
             "the audit log")
    return found[-1]


def test_staff_see_the_fleet_and_every_order_with_its_outcome_through_the_service(
        kioskctl, sim_fleet, service, intruder, tmp_path):
    code, out, err = kioskctl("summary")
    assert code == OK and "from the fleet service" in err
    code, sites = kioskctl.json("summary")
    assert {site["site"]: site["kiosks"] for site in sites}["*"] == COUNT
    code, kiosks = kioskctl.json("list")
    assert code == OK and len(kiosks) == COUNT
    code, shown = kioskctl.json("show", device_name(3))
    assert code == OK and shown["state"]["state"] == "ready"

    assert kioskctl("cmd", device_name(3), "ping")[0] == OK
    change = tmp_path / "name.toml"
    change.write_text('[ui]\nstore_name = "Corner Shop"\n')
    assert kioskctl("config", "apply", str(change), device_name(4))[0] == OK
    forger = Issuer(Signer.generate())  # a key no kiosk and no service trusts
    _order, forged = forger.command(f"site-01/{device_name(5)}", "restart")
    intruder.publish(protocol.Topics("loyalty", "site-01", device_name(5)).command("restart"),
                     forged, qos=1).wait_for_publish(5)

    orders = _until(kioskctl, lambda found: len(found) == 3 and all(
        o["outcomes"] for o in found if o["verified"]))
    by_name = {order["name"]: order for order in orders}
    ping, config, restart = by_name["ping"], by_name["config"], by_name["restart"]
    assert ping["verified"] and ping["signer"] == "alice"
    assert [(o["device_id"], o["outcome"]) for o in ping["outcomes"]] == [(device_name(3), "ok")]
    assert config["signer"] == "alice" and '"Corner Shop"' in config["args"]
    assert [(o["device_id"], o["outcome"]) for o in config["outcomes"]] == [
        (device_name(4), "applied")]
    assert not restart["verified"] and restart["signer"] == ""
    assert restart["problem"].startswith("unknown-key")
    code, out, _ = kioskctl("audit")
    assert code == OK and "UNVERIFIED" in out and "alice" in out

    assert [o["name"] for o in _audit(kioskctl, "--kiosk", device_name(3))] == ["ping"]
    assert len(_audit(kioskctl, "--since", "1h")) == 3
    assert _audit(kioskctl, "--since", "2099-01-01") == []

    with sqlite3.connect(service.db) as conn, pytest.raises(sqlite3.DatabaseError,
                                                            match="append-only"):
        conn.execute("DELETE FROM orders")

    service.stop()  # its log outlives it; the retained order heard again is not logged twice
    service.start()
    assert len(_audit(kioskctl)) == 3


def test_a_command_rollout_hears_a_late_kiosk_through_the_service(kioskctl, sim_fleet,
                                                                  service):
    away = device_name(7)
    sim_fleet.take_offline([away])
    code, record = kioskctl.json("rollout", "start", "--command", "flush-cache", "--all",
                                 "--canary", "5", "--answer-s", "10", "--id", "flush-1")
    assert code == OK and record["outcomes"][away]["outcome"] == "pending"
    sim_fleet.bring_online([away])  # it runs the order now; only the service hears its result
    wait_for(lambda: kioskctl.json("rollout", "status", "flush-1")[1]["outcomes"][away]
             ["outcome"] == "applied", 20, "the late kiosk's outcome")


def test_without_the_service_kioskctl_reads_retained_messages_and_says_what_it_lacks(
        kioskctl, sim_fleet, intruder, tmp_path):
    ghost = protocol.Topics("loyalty", "site-00", "ghost")
    intruder.publish(ghost.status, b"online", qos=1, retain=True).wait_for_publish(5)
    code, sites = kioskctl.json("summary")
    assert code == OK and {site["site"]: site for site in sites}["*"]["unheard"] == 1
    code, _, err = kioskctl("summary")
    assert code == OK and "no fleet service is online" in err
    assert "have said nothing but their status: ghost" in kioskctl("list")[2]
    change = tmp_path / "name.toml"
    change.write_text('[ui]\nstore_name = "Corner Shop"\n')
    assert kioskctl("config", "apply", str(change), device_name(2))[0] == OK
    code, kiosks = kioskctl.json("list")  # versions from the small config/version alone
    assert {k["device_id"]: k["config_version"] for k in kiosks
            if k["device_id"] in (device_name(1), device_name(2))} == {
        device_name(1): 0, device_name(2): 1}
    code, _, err = kioskctl("audit")
    assert code == OK and "only the desired config each kiosk keeps retained" in err
    orders = _audit(kioskctl)
    assert [(o["name"], o["signer"], o["outcomes"][0]["outcome"]) for o in orders] == [
        ("config", "alice", "applied")]
