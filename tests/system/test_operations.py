"""Operations on a running kiosk: the demo, `kiosk card`, health reports staff see."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from kiosk.config import TelemetrySection
from kiosk.sim.demo import run_demo
from kiosk.testing.harness import RunningKiosk, wait_for


@pytest.mark.usefixtures("mosquitto")  # skips where mosquitto is not installed
def test_the_demo_delivers_every_scan_and_says_so_last():
    out = io.StringIO()
    assert run_demo(3, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-1] == "demo: 3 scans, 3 check-ins delivered, 0 lost"
    assert sum("\u2500" * 64 in line for line in lines) >= 6  # display frames were drawn


def test_without_mosquitto_the_demo_runs_offline_and_loses_nothing(monkeypatch):
    monkeypatch.setattr("kiosk.sim.demo.find_mosquitto", lambda: None)
    out = io.StringIO()
    assert run_demo(2, quiet=True, out=out) == 0
    lines = out.getvalue().splitlines()
    assert "OFFLINE" in lines[0]
    assert lines[-2] == "demo: 2 check-ins are waiting in the outbox for the broker"
    assert lines[-1] == "demo: 2 scans, 0 check-ins delivered, 0 lost"


def test_kiosk_card_shows_a_card_to_a_running_simulated_kiosk(kiosk, backend, ledger):
    kiosk.wait_online()
    spool = kiosk.config.camera.spool_dir
    result = subprocess.run([sys.executable, "-m", "kiosk.cli", "card", "LOY-FRANK06",
                             "--spool", spool], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: ledger.balance("LOY-FRANK06") == 10, what="the card's check-in")
    wait_for(lambda: not os.listdir(spool), what="the card taken away")


def test_staff_see_health_reports(kiosk_config, mosquitto, backend, ledger):
    config = replace(kiosk_config, telemetry=TelemetrySection(interval_s=1.0))
    with mosquitto.listen("loyalty/test-shop/kiosk-test/tele/health") as payloads:
        kiosk = RunningKiosk(config).start()
        try:
            kiosk.wait_online()
            kiosk.show_card("LOY-ALICE01")
            kiosk.type_code("not a member")
            wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the check-in")
            report = wait_for(lambda: next((r for r in map(json.loads, payloads)
                                            if r["scans"] == 2 and r["delivered"] == 1), None),
                              what="a report after both scans and the PUBACK")
        finally:
            kiosk.stop()
    reports = [json.loads(payload) for payload in payloads]
    assert report["checkins"] == 1
    assert report["outbox_depth"] == 0 and report["state"] == "ready"
    # the simulated camera decodes at its frame rate while the card is held up
    assert any(r["decode_fps"] > 0 for r in reports)
    assert report["connects"] == 1 and report["events_dropped"] == 0
