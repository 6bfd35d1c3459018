"""The fleet simulator (kiosk.testing.fleet): virtual kiosks running the kiosk's own
provisioning code on a real mosquitto, driven by the real kioskctl."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from kiosk.staff.keyring import Keyring
from kiosk.staff.kioskctl import OK, REFUSED
from kiosk.testing.fleet import device_name
from kiosk.testing.harness import wait_for
from kiosk.trust.signing import Signer, public_key_text

COUNT = 30


@pytest.fixture
def fleet_shape() -> dict[str, Any]:
    return {"count": COUNT, "sites": 3, "per_connection": 10, "flaky": [device_name(1)]}


def test_staff_see_and_configure_a_simulated_fleet(kioskctl, sim_fleet, tmp_path):
    code, kiosks = kioskctl.json("list")
    assert code == OK and len(kiosks) == COUNT
    assert {(k["status"], k["config_version"]) for k in kiosks} == {("online", 0)}
    sim_fleet.take_offline([device_name(2)])
    change = tmp_path / "name.toml"
    change.write_text('[ui]\nstore_name = "Corner Shop"\n')
    code, outcomes = kioskctl.json("--timeout", "15", "config", "apply", str(change), "--all")
    assert code == REFUSED  # the flaky kiosk rolled it back; the offline one did not answer
    assert outcomes[device_name(1)]["outcome"] == "refused"
    assert outcomes[device_name(1)]["reason"].startswith("rolled back: ")
    assert outcomes[device_name(2)]["outcome"] == "no answer"
    applied = [d for d, o in outcomes.items() if o["outcome"] == "applied"]
    assert len(applied) == COUNT - 2
    sim_fleet.bring_online([device_name(2)])  # the retained order waited for it
    wait_for(lambda: sim_fleet.versions()[device_name(2)] == 1, 20, "the late kiosk's config")
    assert sim_fleet.versions()[device_name(1)] == 0


def test_a_simulated_fleet_answers_site_commands_with_the_real_guard(kioskctl, sim_fleet):
    code, answers = kioskctl.json("cmd", "--site", "site-00", "ping")
    assert code == OK and len(answers) == COUNT // 3
    assert all(body["status"] == "ok" for body in answers.values())


def test_a_simulated_fleet_runs_from_the_command_line(kioskctl, mosquitto, tmp_path):
    trusted = Keyring(kioskctl.keys).list()[0].public
    # One base64url key in 64 starts with "-", which argparse took for an option.
    dashed = next(text for text in (public_key_text(Signer.generate().public)
                                    for _ in range(10_000)) if text.startswith("-"))
    process = subprocess.Popen(
        [sys.executable, "-m", "kiosk.testing.fleet", "--host", mosquitto.host, "--port",
         str(mosquitto.port), "--count", "5", "--sites", "2", "--trust", trusted,
         "--trust", dashed, "--state", str(tmp_path / "cli-fleet")], stdout=subprocess.PIPE,
        text=True)
    try:
        assert "5 simulated kiosks" in process.stdout.readline()
        code, kiosks = kioskctl.json("list")
        assert code == OK and sorted(k["device_id"] for k in kiosks) == [
            device_name(i) for i in range(5)]
    finally:
        process.terminate()
        assert process.wait(20) == 0
