"""The config in force: the local file plus staff's promoted overlay, computed by one function
(``overlay.in_force``) that the daemon and every tool that only looks share."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kiosk import cli
from kiosk.config import Config, KioskSection, MqttSection
from kiosk.ops import doctor
from kiosk.provisioning import overlay
from kiosk.testing.daemon import to_toml

MOVED = overlay.Applied(7, "c7", {"mqtt": {"host": "broker-b", "password": "s3cret"},
                                  "counter": {"reply_timeout_s": 5}})


@pytest.fixture
def base(tmp_path: Path) -> Config:
    return Config(kiosk=KioskSection(device_id="kiosk-test", state_dir=str(tmp_path / "state")),
                  mqtt=MqttSection(host="broker-a"))


def _promote(base: Config, applied: overlay.Applied) -> None:
    folder = overlay.folder_of(base)
    overlay.write_trial(folder, applied)
    overlay.promote(folder)


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_the_file_alone_is_in_force_until_staff_change_it(base):
    layers = overlay.in_force(base)
    assert layers == overlay.InForce(base, None)
    assert layers.staff_values() == []
    assert not overlay.folder_of(base).exists()  # looking made nothing


def test_a_promoted_overlay_is_laid_over_the_file_and_named_value_by_value(base):
    _promote(base, MOVED)
    layers = overlay.in_force(base)
    assert layers.applied == MOVED and not layers.problem
    assert layers.config.mqtt.host == "broker-b" and layers.config.mqtt.password == "s3cret"
    assert layers.config.counter.reply_timeout_s == 5.0
    assert layers.config.kiosk == base.kiosk  # what staff did not name comes from the file
    assert layers.staff_values() == [
        'mqtt.host = "broker-b" (staff config version 7)',
        'mqtt.password = "(set)" (staff config version 7)',  # a secret never shown
        "counter.reply_timeout_s = 5.0 (staff config version 7)",
    ]
    assert overlay.startup(base).config == layers.config  # the daemon lays it the same way


@pytest.mark.parametrize("tried", [False, True], ids=["waiting", "being-tried"])
def test_a_trial_is_the_daemons_business_never_a_looking_tools(base, tried):
    _promote(base, MOVED)
    folder = overlay.folder_of(base)
    overlay.write_trial(folder, overlay.Applied(8, "c8", {"mqtt": {"host": "broker-c"}}))
    if tried:
        (folder / "trial.started").touch()
    before = _files(folder)
    layers = overlay.in_force(base)
    assert layers.config.mqtt.host == "broker-b" and layers.applied == MOVED
    assert _files(folder) == before  # not marked as tried, not rolled back, nothing rejected


@pytest.mark.parametrize(("body", "why"), [
    (b"{not json", "ignoring unreadable config overlay"),
    (json.dumps({"version": 3, "cmd_id": "c3", "config": {"counter": {"reply_timeout_s": "x"}}}
                ).encode(), "config overlay version 3 does not fit"),
], ids=["unreadable", "no-longer-fits"])
def test_an_overlay_that_cannot_be_used_leaves_the_file_alone_with_a_warning(base, body, why):
    folder = overlay.folder_of(base)
    folder.mkdir(parents=True)
    (folder / "good.json").write_bytes(body)
    layers = overlay.in_force(base)
    assert layers.config == base and layers.applied is None
    assert layers.problem.startswith(why)
    assert layers.staff_values() == []


def test_check_config_names_the_file_first_then_each_value_staff_set(base, tmp_path, capsys):
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(base))
    _promote(base, MOVED)
    assert cli.main(["check-config", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: ok"
    assert lines[1:] == overlay.in_force(base).staff_values()


def test_check_config_warns_when_staff_config_cannot_be_used(base, tmp_path, capsys):
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(base))
    overlay.folder_of(base).mkdir(parents=True)
    (overlay.folder_of(base) / "good.json").write_bytes(b"{not json")
    assert cli.main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out == f"{path}: ok\n"
    assert out.err.startswith("kiosk: warning: ignoring unreadable config overlay ")


def test_doctor_says_which_layer_each_value_came_from(base, tmp_path):
    path = tmp_path / "kiosk.toml"
    _promote(base, MOVED)
    findings = doctor.layers(path, overlay.in_force(base))
    assert [(f.level, f.detail) for f in findings] == [
        ("ok", str(path)), *[("ok", line) for line in overlay.in_force(base).staff_values()]]
    out = io.StringIO()
    doctor.report(findings, out)
    assert '[ ok ] config: mqtt.host = "broker-b" (staff config version 7)' in out.getvalue()


def test_doctor_warns_when_staff_config_cannot_be_used(base, tmp_path):
    overlay.folder_of(base).mkdir(parents=True)
    (overlay.folder_of(base) / "good.json").write_bytes(b"{not json")
    warning = doctor.layers(tmp_path / "kiosk.toml", overlay.in_force(base))[-1]
    assert warning.level == "warn" and "unreadable config overlay" in warning.detail
    assert "sudo -u kiosk kiosk doctor" in warning.fix
