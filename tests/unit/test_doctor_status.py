"""`kiosk doctor` and `kiosk status` without a running kiosk: every problem named with a fix,
a config error is exit 2, status never uses the kiosk's own credentials."""

from __future__ import annotations

import io
import os
import socket
from dataclasses import replace

import pytest

from drivers.specs import CameraSpec, DisplaySpec, LightsSpec, SerialSpec
from kiosk.config import MqttSection
from kiosk.ops import doctor, status
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import sim_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _problems(findings: list[doctor.Finding]) -> dict[str, doctor.Finding]:
    return {f.check: f for f in findings if f.level == "fail"}


def test_doctor_names_each_problem_with_a_fix(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "kiosk.db").write_bytes(b"\x00not a database" * 300)
    os.chmod(state / "kiosk.db", 0o644)
    config = replace(sim_config(state, _free_port()),
                     camera=CameraSpec(backend="picamera2"),
                     serial=SerialSpec(backend="pyserial", port=str(tmp_path / "ttyACM0")),
                     display=DisplaySpec(backend="luma", i2c_port=1),
                     lights=LightsSpec(backend="gpio"))
    empty_dev = tmp_path / "dev"
    empty_dev.mkdir()
    findings = doctor.run_checks(config, now=1_600_000_000.0, dev=empty_dev)  # 2020
    problems = _problems(findings)
    assert set(problems) == {"state dir", "database", "camera", "serial", "display", "lights",
                             "broker", "clock"}
    assert all(problem.fix for problem in problems.values())
    assert "readable by every user" in problems["state dir"].detail
    assert "damaged" in problems["database"].detail
    assert "Connection refused" in problems["broker"].detail
    assert "raspi-config nonint do_i2c 0" in problems["display"].fix
    assert "2020-09-13" in problems["clock"].detail
    assert doctor.report(findings, io.StringIO()) == 1


def test_doctor_reports_a_config_error_with_exit_2(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text('[mqtt]\nport = "1883"\n')
    out = io.StringIO()
    assert doctor.main(str(path), out) == 2
    assert out.getvalue().startswith("[FAIL] config: ") and "fix: edit" in out.getvalue()


def test_status_never_connects_with_the_kiosks_own_credentials(tmp_path):
    with socket.socket() as broker:  # anything that connects shows up in accept()
        broker.bind(("127.0.0.1", 0))
        broker.listen()
        broker.settimeout(0.5)
        port = broker.getsockname()[1]
        config = replace(sim_config(tmp_path / "state", port),
                         mqtt=MqttSection(host="127.0.0.1", port=port, username="kiosk-test",
                                          password="secret"))
        path = tmp_path / "kiosk.toml"
        path.write_text(to_toml(config))
        out = io.StringIO()
        status.main(str(path), out)
        assert "online   not asked" in out.getvalue()
        with pytest.raises(TimeoutError):
            broker.accept()
