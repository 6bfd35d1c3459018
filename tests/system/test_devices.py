"""Devices failing inside a running kiosk: the kiosk says so, and check-ins go on."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from drivers.display import LumaPanel
from drivers.factory import make_hardware
from drivers.nfc import NfcCodeSource
from drivers.sim import SimPn532
from drivers.specs import (
    DisplaySpec,
    LightsSpec,
    NfcSpec,
)
from kiosk.config import TelemetrySection
from kiosk.testing.harness import RunningKiosk, wait_for
from tests.devices import Seen, UnpluggedBus


def test_a_camera_failure_degrades_the_kiosk_while_serial_scans_go_on(kiosk, mosquitto, backend,
                                                                       ledger):
    with mosquitto.listen("loyalty/test-shop/kiosk-test/state") as states:
        kiosk.wait_online()
        kiosk.app.sim.camera.unplug()
        degraded = json.loads(wait_for(
            lambda: states and b"degraded" in states[-1] and states[-1], what="degraded"))
        assert degraded["reason"].startswith("camera: ")
        kiosk.type_code("LOY-SERIAL1")  # the serial reader still takes check-ins
        wait_for(lambda: ledger.balance("LOY-SERIAL1") == 10, what="the serial check-in")
        kiosk.app.sim.camera.plug()
        ready = json.loads(wait_for(
            lambda: states and b'"ready"' in states[-1] and states[-1], what="ready again"))
        assert ready["reason"] == ""
    kiosk.show_card("LOY-CAMERA1")
    wait_for(lambda: ledger.balance("LOY-CAMERA1") == 10, what="the camera check-in")


def test_checkins_go_on_while_the_panel_fails_and_health_says_so(kiosk_config, mosquitto,
                                                                  backend, ledger):
    config = replace(kiosk_config, telemetry=TelemetrySection(interval_s=1.0))
    hardware, sim = make_hardware(config.hardware)
    bus = UnpluggedBus()
    hardware.display = LumaPanel(DisplaySpec(), interface=bus)  # an I2C panel that fails
    kiosk = RunningKiosk(config, (hardware, sim))
    with mosquitto.listen("loyalty/test-shop/kiosk-test/tele/health") as payloads:
        kiosk.start()
        try:
            kiosk.wait_online()
            kiosk.show_card("LOY-ALICE01")
            wait_for(lambda: ledger.balance("LOY-ALICE01") == 10, what="the check-in")
            report = wait_for(lambda: next((r for r in map(json.loads, payloads)
                                            if r["problems"]), None), what="a degraded report")
            assert report["state"] == "degraded"
            assert "Remote I/O error" in report["problems"][0]
            bus.unplugged = False
            wait_for(lambda: kiosk.app.display.fault is None and kiosk.app.display.frames_shown,
                     40, what="the panel back (retries back off up to 30 s)")
        finally:
            kiosk.stop()


@pytest.fixture
def nfc():
    reader = SimPn532()
    source = NfcCodeSource(NfcSpec(backend="sim"), opener=reader.open)
    seen = Seen()
    source.start(seen.code, seen.problem)
    yield reader, seen
    source.stop()


def test_taps_and_wedge_scans_check_in_with_their_source(kiosk, mosquitto, backend, ledger):
    kiosk.wait_online()
    with mosquitto.listen("loyalty/test-shop/kiosk-test/evt/checkin") as checkins:
        kiosk.tap(b"\x04\x10\x20\x30\x40\x50\x60", text="LOY-NFCTEXT1")
        wait_for(lambda: ledger.balance("LOY-NFCTEXT1") == 10, what="the NFC check-in")
        kiosk.app.sim.nfc.take_away()
        kiosk.tap(b"\xde\xad\xbe\xef")  # a tag with no member code: its UID is the reference
        wait_for(lambda: ledger.balance("uid:DEADBEEF") == 10, what="the UID check-in")
        kiosk.scan_on_keyboard("LOY-WEDGE01")
        wait_for(lambda: ledger.balance("LOY-WEDGE01") == 10, what="the keyboard check-in")
        wait_for(lambda: len(checkins) == 3, what="three check-ins on the wire")
    sources = {c["member_id"]: c["source"] for c in map(json.loads, checkins)}
    assert sources == {"LOY-NFCTEXT1": "nfc", "uid:DEADBEEF": "nfc", "LOY-WEDGE01": "keyboard"}


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
