"""kioskctl without a broker: the example config, an unreachable broker."""

from __future__ import annotations

from kiosk.staff.kioskctl import FAILED, main
from kiosk.staff.settings import StaffSettings, load_settings
from kiosk.testing.broker import free_port
from tests import ROOT


def test_the_example_staff_config_shows_exactly_the_defaults():
    example = ROOT / "config" / "kioskctl.toml"
    assert load_settings(example) == StaffSettings()


def test_an_unreachable_broker_is_exit_code_1(tmp_path, capsys):
    code = main(["--config", str(tmp_path / "none.toml"), "--host", "127.0.0.1",
                 "--port", str(free_port()), "list"])
    assert code == FAILED and "cannot reach the broker" in capsys.readouterr().err
