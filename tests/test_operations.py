"""How the kiosk runs in a shop: systemd, degraded hardware, the simulated-hardware switch,
and the demo a newcomer runs first."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
from PIL import Image

from drivers.factory import make_hardware
from drivers.specs import CameraSpec, DisplaySpec, LightsSpec, SerialSpec
from kiosk.config import Config, TelemetrySection
from kiosk.sim.demo import run_demo
from kiosk.sim.termview import draw, frame_lines
from kiosk.testing.daemon import start_daemon, to_toml
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for


def test_kiosk_hardware_sim_switches_every_fitted_device_to_simulation(tmp_path, monkeypatch):
    monkeypatch.setenv("KIOSK_HARDWARE", "sim")
    config = Config(
        camera=CameraSpec(spool_dir=str(tmp_path / "spool")),  # picamera2 in the file
        serial=SerialSpec(backend="pyserial", sim_link=str(tmp_path / "serial")),
        display=DisplaySpec(sim_png=str(tmp_path / "oled.png")),
        lights=LightsSpec(backend="none"),
    )
    hardware, sim = make_hardware(config.hardware)
    try:
        assert hardware.problems == []
        assert sim.camera is not None and sim.serial is not None and sim.display is not None
        assert hardware.lights is None  # "none" stays none
        assert (tmp_path / "serial").is_symlink()
    finally:
        hardware.close()


@pytest.mark.filterwarnings("ignore::gpiozero.exc.PinFactoryFallback")
def test_missing_hardware_degrades_the_kiosk_and_says_why(kiosk_config, mosquitto, backend,
                                                          ledger):
    # A real OLED on a machine with no I2C bus, and no GPIO chip for the LEDs.
    config = replace(kiosk_config, display=DisplaySpec(backend="luma", i2c_port=7),
                     lights=LightsSpec(backend="gpio"))
    with mosquitto.listen("loyalty/test-shop/kiosk-test/state") as states:
        kiosk = RunningKiosk(config).start()
        try:
            state = json.loads(wait_for(lambda: states and states[-1], what="the retained state"))
            assert state["state"] == "degraded"
            assert "display:" in state["reason"] and "lights:" in state["reason"]
            kiosk.wait_online()
            kiosk.show_card("LOY-ALICE01")  # the camera still takes check-ins
            wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the check-in")
        finally:
            kiosk.stop()


def test_systemd_gets_ready_and_watchdog_pings(tmp_path, mosquitto, backend):
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000"}
    config = sim_config(tmp_path / "daemon", mosquitto.port, device_id="daemon-1")
    daemon = start_daemon(config, tmp_path / "kiosk.toml", env=env)
    try:
        messages = []
        while not any(m.startswith("WATCHDOG=1") for m in messages):
            messages.append(listener.recv(4096).decode())
        assert messages[0].startswith("READY=1\nSTATUS=device daemon-1")
        daemon.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(listener.recv(4096).decode())
        assert daemon.wait(15) == 0
    finally:
        listener.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_the_terminal_shows_the_display_pixel_for_pixel_with_the_leds():
    image = Image.new("1", (4, 4), 0)
    for xy in [(0, 0), (1, 1), (2, 0), (2, 1)]:
        image.putpixel(xy, 1)
    assert frame_lines(image) == ["\u259a\u258c", "  "]  # 2x2 pixels a character
    drawn = draw(image, {"pattern": "ok", "led": {"green": 1.0, "red": 0.0}, "buzzer": "E5"})
    assert drawn.splitlines()[1].endswith(" ok")
    assert drawn.splitlines()[2].endswith("green  \u25cf")


@pytest.mark.parametrize("size", [(128, 64), (256, 64), (128, 128)])
def test_every_display_fits_an_80_column_terminal(size):
    state = {"pattern": "identify", "led": {"red": 1.0, "green": 1.0, "blue": 1.0},
             "buzzer": "A5"}
    drawn = draw(Image.new("RGB", size, (255, 255, 255)), state)
    assert max(len(line) for line in drawn.splitlines()) <= 80


@pytest.mark.usefixtures("mosquitto")  # skips where mosquitto is not installed
def test_the_demo_delivers_every_scan_and_says_so_last():
    out = io.StringIO()
    assert run_demo(3, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-1] == "demo: 3 scans, 3 check-ins delivered, 0 lost"
    assert sum("\u2500" * 64 in line for line in lines) >= 6  # display frames were drawn


def test_a_config_written_out_reads_back_equal(tmp_path):
    from kiosk.config import load_config

    config = sim_config(tmp_path, 1883, device_id="round-trip")
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config


def test_without_mosquitto_the_demo_runs_offline_and_loses_nothing(monkeypatch):
    monkeypatch.setattr("kiosk.sim.demo.find_mosquitto", lambda: None)
    out = io.StringIO()
    assert run_demo(2, quiet=True, out=out) == 0
    lines = out.getvalue().splitlines()
    assert "OFFLINE" in lines[0]
    assert lines[-2] == "demo: 2 check-ins are waiting in the outbox for the broker"
    assert lines[-1] == "demo: 2 scans, 0 check-ins delivered, 0 lost"


def test_a_corrupt_database_is_replaced_and_reported(kiosk_config, mosquitto, backend, ledger):
    state = kiosk_config.kiosk.state_dir
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "kiosk.db"), "wb") as db:
        db.write(b"\x00garbage" * 512)
    kiosk = RunningKiosk(kiosk_config).start()
    try:
        assert "database was corrupt" in kiosk.app.problems.reason
        kiosk.wait_online()
        kiosk.show_card("LOY-ALICE01")
        wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="a check-in on the new db")
    finally:
        kiosk.stop()


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


def test_cpu_temperature_is_read_from_the_thermal_zone(tmp_path):
    from kiosk.daemon.telemetry import cpu_temperature

    zone = tmp_path / "temp"
    zone.write_text("48250\n")
    assert cpu_temperature(zone) == 48.2
    assert cpu_temperature(tmp_path / "missing") is None
