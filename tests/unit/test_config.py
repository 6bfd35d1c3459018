"""A bad config stops start-up with one line naming the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import Config, ConfigError, KioskSection, config_path, load_config
from kiosk.ops.identity import default_device_id
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import sim_config
from tests import ROOT


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    return load_config(path)


def test_the_documented_example_holds_exactly_the_defaults():
    assert load_config(ROOT / "config" / "kiosk.toml") == Config()


def test_the_simulated_example_simulates_every_device():
    config = load_config(ROOT / "config" / "kiosk.sim.toml")
    backends = {config.camera.backend, config.serial.backend, config.display.backend,
                config.lights.backend}
    assert backends == {"sim"}


def test_values_are_read_and_integers_are_accepted_for_seconds(tmp_path):
    config = _load(tmp_path, '[mqtt]\nhost = "broker.lan"\nport = 8883\n'
                             '[counter]\nreply_timeout_s = 2\n')
    assert config.mqtt.host == "broker.lan"
    assert config.mqtt.port == 8883
    assert config.counter.reply_timeout_s == 2.0
    assert config.camera == Config().camera


@pytest.mark.parametrize(("text", "message"), [
    ("[mqtt]\nprot = 1883\n", "mqtt.prot: unknown key"),
    ("colour = 'red'\n", "colour: unknown key"),
    ('[mqtt]\nport = "1883"\n', "mqtt.port: expected an integer, got '1883'"),
    ("[mqtt]\ntls = 1\n", "mqtt.tls: expected true or false, got 1"),
    ("[camera]\nfps = true\n", "camera.fps: expected a number, got True"),
    ("[mqtt]\nport = 70000\n", "mqtt.port: expected a TCP port from 1 to 65535"),
    ("[camera]\nwidth = 8\n", "camera.width: expected 16 to 4096 pixels"),
    ('[camera]\nzone = "600,0,100,100"\n', "camera.zone: expected \"x,y,width,height\" in pixels"),
    ('[camera]\nbackend = "usb"\n', "camera.backend: expected one of picamera2, sim, none"),
    ('[kiosk]\nsite = "a/b"\n', "kiosk.site: expected 1-64 letters"),
    ('[members]\npattern = "LOY-[A-Z"\n', "members.pattern: expected a regular expression"),
    ("[lights]\ngreen_pin = 17\nred_pin = 17\n", "lights.buzzer_pin: expected a different"),
    ('[serial]\nframing = "crlf"\n', "serial.framing: expected one of lines, stx-etx"),
    ('[mqtt]\ntls = true\nca_file = "/nonexistent/ca.pem"\n',
     "mqtt.ca_file: no such file /nonexistent/ca.pem"),
    ("mqtt = 3\n", "mqtt: expected a table"),
    ("[mqtt\n", "not valid TOML"),
])
def test_bad_values_name_the_file_the_key_and_the_expectation(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert str(error.value).startswith(f"{tmp_path / 'kiosk.toml'}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_the_path_comes_from_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv("KIOSK_CONFIG", "/etc/from-env.toml")
    assert config_path("/etc/from-option.toml") == Path("/etc/from-option.toml")
    assert config_path(None) == Path("/etc/from-env.toml")
    monkeypatch.delenv("KIOSK_CONFIG")
    assert config_path(None) == Path("/etc/kiosk/kiosk.toml")


def test_device_id_is_the_pi_cpu_serial_then_the_machine_id(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("Hardware\t: BCM2835\nSerial\t\t: 00000000a1b2c3d4\nModel\t: Pi 4\n")
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    assert default_device_id(cpuinfo, machine_id) == "pi-a1b2c3d4"
    cpuinfo.write_text("processor\t: 0\n")
    assert default_device_id(cpuinfo, machine_id) == "host-0123456789ab"


def test_a_config_written_out_reads_back_equal(tmp_path):
    config = sim_config(tmp_path, 1883, device_id="round-trip")
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config


def test_log_levels_are_read_in_any_case():
    assert KioskSection(log_level="debug").log_level == "DEBUG"
