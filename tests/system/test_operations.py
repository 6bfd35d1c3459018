"""Operations on a running kiosk: the demo, `kiosk card`, health reports staff see."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

from kiosk.config import TelemetrySection
from kiosk.counter.screens import Idle
from kiosk.sim.demo import demo_kiosk, run_demo
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for
from tests.terminal import Terminal


@pytest.mark.usefixtures("mosquitto")  # skips where mosquitto is not installed
def test_the_demo_delivers_every_scan_and_says_so_last():
    out = io.StringIO()
    assert run_demo(3, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-1] == "demo: 3 scans: 3 check-ins delivered; 0 lost"
    assert sum("\u2500" * 64 in line for line in lines) >= 6  # display frames were drawn


CLOSING = re.compile(r"demo: (\d+) scans: (\d+) check-ins delivered, (\d+) already checked in; "
                     r"(\d+) lost")


@pytest.mark.usefixtures("mosquitto")
def test_the_endless_demo_counts_repeat_customers_as_already_checked_in():
    """The demo as a newcomer runs it: endless, with the shipped 30 s cooldown, so the five
    customers come round again while still checked in. Each repeat is told "already checked
    in" and counted so; none is lost, and Ctrl-C ends the demo cleanly with exit 0."""
    demo = subprocess.Popen([sys.executable, "-m", "kiosk", "demo", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if sum(line.startswith("  ") for line in lines) == 7:  # the first customer is back
                break
        demo.send_signal(signal.SIGINT)
        rest, errors = demo.communicate(timeout=60)
    finally:
        demo.kill()
    lines += rest.splitlines()
    assert demo.returncode == 0, (lines, errors)
    assert "WARNING" not in errors and not any("WARNING" in line for line in lines)
    closing = CLOSING.fullmatch(lines[-1])
    assert closing, lines[-1]
    scans, delivered, repeats, lost = map(int, closing.groups())
    assert scans >= 7 and lost == 0 and delivered + repeats == scans
    assert repeats >= 1  # the sixth customer is the first one again, well within 30 s
    assert repeats == sum(line.startswith("  already checked in") for line in lines)
    assert delivered == sum(line.startswith("  checked in") for line in lines)
    assert "demo: stopped (Ctrl-C)" in lines


def test_the_demo_kiosk_idles_on_scan_your_card(mosquitto, tmp_path):
    kiosk = demo_kiosk(tmp_path, mosquitto.port).start()
    try:
        kiosk.wait_online()
        assert wait_for(lambda: kiosk.app.screen == Idle(online=True), what="the idle screen")
    finally:
        kiosk.stop()


def test_without_mosquitto_the_demo_runs_offline_and_loses_nothing(monkeypatch):
    monkeypatch.setattr("kiosk.sim.demo.find_mosquitto", lambda: None)
    out = io.StringIO()
    assert run_demo(2, quiet=True, out=out) == 0
    lines = out.getvalue().splitlines()
    assert "OFFLINE" in lines[0]
    assert lines[-1] == "demo: 2 scans: 2 waiting in the outbox; 0 lost"


def test_on_a_terminal_the_demo_ends_with_its_count_on_a_line_of_its_own(monkeypatch):
    monkeypatch.setattr("kiosk.sim.demo.find_mosquitto", lambda: None)
    terminal = Terminal()
    assert run_demo(1, out=terminal) == 0
    assert terminal.getvalue().endswith("demo: 1 scans: 1 waiting in the outbox; 0 lost\x1b[K"
                                        "\x1b[J\n")
    assert terminal.screen()[0].startswith("\u250c")  # drawn in place: nothing scrolled


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


@pytest.mark.parametrize(("command", "name"), [(["-m", "kiosk"], "kiosk"),
                                               (["-m", "kiosk.staff.kioskctl"], "kioskctl")])
def test_both_commands_say_their_version(command, name):
    from kiosk import __version__

    result = subprocess.run([sys.executable, *command, "--version"], capture_output=True,
                            text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, f"{name} {__version__}\n")


def test_the_installed_commands_say_their_version():
    from kiosk import __version__

    bin_dir = os.path.dirname(sys.executable)  # where pip put the console scripts
    for name in ("kiosk", "kioskctl"):
        result = subprocess.run([os.path.join(bin_dir, name), "--version"], capture_output=True,
                                text=True, timeout=30)
        assert result.stdout == f"{name} {__version__}\n"


def test_without_evdev_the_simulated_keyboard_names_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "evdev", None)  # as in a plain install: import fails
    kiosk = RunningKiosk(sim_config(tmp_path, 1)).start()
    try:
        with pytest.raises(RuntimeError, match=r"no simulated keyboard reader: keyboard: the "
                           r"simulated devices need python-evdev.*loyalty-kiosk\[testing\]"):
            kiosk.scan_on_keyboard("LOY-WEDGE01")
    finally:
        kiosk.stop()


def test_the_testing_extra_brings_what_the_simulated_devices_import():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert any(req.startswith("evdev") for req in extras["testing"])
    assert any(req.startswith("pytest") for req in extras["testing"])
    assert "loyalty-kiosk[testing]" in extras["dev"]


def test_a_running_kiosk_writes_its_figures_for_node_exporter(kiosk_config, mosquitto, backend,
                                                              ledger, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from kiosk.config import MetricsSection

    folder = tmp_path / "node-exporter"
    folder.mkdir()

    def samples() -> dict[str, float]:
        text = (folder / "kiosk.prom").read_text() if (folder / "kiosk.prom").exists() else ""
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    config = replace(kiosk_config, metrics=MetricsSection(textfile_dir=str(folder),
                                                          interval_s=1.0))
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        kiosk.show_card("LOY-ALICE01")
        wait_for(lambda: samples().get("kiosk_checkins_total") == 1
                 and samples().get("kiosk_online") == 1, what="the check-in in the metrics")
        assert samples()["kiosk_checkins_today"] == 1
    finally:
        kiosk.stop()
    assert samples()["kiosk_online"] == 0  # written once more at the stop
    assert [path.name for path in folder.iterdir()] == ["kiosk.prom"]
