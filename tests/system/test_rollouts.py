"""Staged rollouts and the fleet summary, with the real kioskctl against a simulated fleet
(virtual kiosks running the kiosk's own provisioning code) on a real mosquitto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kiosk.staff.kioskctl import OK, REFUSED
from kiosk.staff.rollout import rank
from kiosk.testing.fleet import device_name
from kiosk.testing.harness import wait_for

COUNT, SITES = 40, 4
ROLLOUT = "names-1"


def _site(index: int) -> str:
    return f"site-{index % SITES:02d}"


CANARIES = sorted(range(COUNT), key=lambda i: rank(ROLLOUT, _site(i), device_name(i)))[:2]
"""The first two kiosks of rollout ``names-1``'s order: they cannot connect with a new
config, so they roll it back."""


@pytest.fixture
def fleet_shape() -> dict[str, Any]:
    return {"count": COUNT, "sites": SITES, "per_connection": 15,
            "flaky": [device_name(i) for i in CANARIES]}


def _change(tmp_path: Path, text: str) -> str:
    path = tmp_path / "change.toml"
    path.write_text(text)
    return str(path)


def test_a_rollout_goes_phase_by_phase_and_an_offline_kiosk_catches_up(kioskctl, sim_fleet,
                                                                       tmp_path):
    away = device_name(COUNT - 1)
    sim_fleet.take_offline([away])
    code, record = kioskctl.json("rollout", "start", _change(tmp_path, '[ui]\nlocale = "tr"\n'),
                              "--all", "--canary", "3", "--phases", "25,100", "--answer-s", "15",
                              "--max-bad", "20", "--min-seen", "5")  # 2 flaky kiosks of 40
    assert code == OK and record["state"] == "done" and len(record["sent_at"]) == 3
    outcomes = {d: o["outcome"] for d, o in record["outcomes"].items()}
    assert outcomes[away] == "pending"
    assert sorted(set(outcomes.values())) == ["applied", "pending", "rolled back"]
    sim_fleet.bring_online([away])  # its retained order was waiting: applied and reported now
    wait_for(lambda: kioskctl.json("rollout", "status", record["id"])[1]["outcomes"][away]
             ["outcome"] == "applied", 30, "the returning kiosk's outcome")


def test_a_rollout_stops_when_its_canary_fails_and_can_be_resumed_and_reverted(
        kioskctl, sim_fleet, tmp_path):
    change = _change(tmp_path, '[ui]\nstore_name = "Corner Shop"\n')
    code, out, _ = kioskctl("rollout", "start", change, "--all", "--id", ROLLOUT, "--canary", "2",
                         "--phases", "50,100", "--max-bad", "0", "--answer-s", "15")
    assert code == REFUSED, out
    assert f"rollout {ROLLOUT}: aborted, 0 phase(s) done; stopped by its rule: 2 of 2" in out
    assert "38 not sent, 2 rolled back" in out
    assert sorted(v for v in sim_fleet.versions().values()) == [0] * COUNT

    # Another kioskctl machine (a new kioskctl process and connection) sees it and goes on.
    code, listed = kioskctl.json("rollout", "status")
    assert code == OK and [(r["id"], r["state"]) for r in listed] == [(ROLLOUT, "aborted")]
    code, record = kioskctl.json("rollout", "resume", ROLLOUT)
    assert code == OK and record["state"] == "done"
    assert sum(o["outcome"] == "applied" for o in record["outcomes"].values()) == COUNT - 2
    assert sum(v == 1 for v in sim_fleet.versions().values()) == COUNT - 2

    code, record = kioskctl.json("rollout", "revert", ROLLOUT)
    assert code == OK and record["state"] == "reverted"
    wait_for(lambda: sum(o["outcome"] == "reverted" for o in kioskctl.json(
        "rollout", "status", ROLLOUT)[1]["outcomes"].values()) == COUNT - 2, 30, "the revert")
    assert {k.desk.shadow.config.ui.store_name for k in sim_fleet.kiosks.values()} == {""}


def test_a_rollout_that_refuses_everywhere_stops_at_the_canary(kioskctl, sim_fleet, tmp_path):
    code, record = kioskctl.json("rollout", "start", _change(tmp_path, '[kiosk]\nsite = "x"\n'),
                              "--all", "--canary", "1", "--answer-s", "15")
    assert code == REFUSED and record["state"] == "aborted"
    [refused] = [o for o in record["outcomes"].values() if o["outcome"] == "refused"]
    assert "can only be set in the local config file" in refused["reason"]
    assert sum(o["outcome"] == "not sent" for o in record["outcomes"].values()) == COUNT - 1


def test_the_summary_counts_every_site_and_says_what_it_has_not_heard(kioskctl, sim_fleet):
    sim_fleet.take_offline([device_name(0), device_name(4)])  # both of site-00
    code, sites = kioskctl.json("summary")
    assert code == OK
    by_site = {site["site"]: site for site in sites}
    assert by_site["site-00"]["offline"] == 2 and by_site["site-01"]["offline"] == 0
    assert by_site["*"]["kiosks"] == COUNT and by_site["*"]["online"] == COUNT - 2
    assert by_site["*"]["unheard"] == 0 and by_site["*"]["drift"] == 0
    code, out, _ = kioskctl("summary")
    assert code == OK and len(out.splitlines()) == SITES + 2
    assert all(len(line) <= 80 for line in out.splitlines())
