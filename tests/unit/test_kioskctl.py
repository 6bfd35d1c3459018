"""kioskctl without a broker: the example config, an unreachable broker, how it prints."""

from __future__ import annotations

from kiosk.staff.kioskctl import FAILED, main
from kiosk.staff.settings import StaffSettings, load_settings
from kiosk.staff.view import printable, table
from kiosk.testing.broker import free_port
from tests import ROOT


def test_the_example_staff_config_shows_exactly_the_defaults():
    example = ROOT / "config" / "kioskctl.toml"
    assert load_settings(example) == StaffSettings()


def test_an_unreachable_broker_is_exit_code_1(tmp_path, capsys):
    code = main(["--config", str(tmp_path / "none.toml"), "--host", "127.0.0.1",
                 "--port", str(free_port()), "list"])
    assert code == FAILED and "cannot reach the broker" in capsys.readouterr().err


def test_tables_fit_80_columns_cutting_anything_but_the_kiosk_id_first():
    rows = [["DEVICE", "SITE", "STATUS", "FIRMWARE"],
            ["k" * 40, "shop-with-a-long-name", "online", "1.2.3+build.4567890"]]
    lines = table(rows, 80).splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" in lines[1]
    assert lines[1].split()[0] == "k" * 40 and lines[1].split()[2] == "online"
    roomy = table(rows, 120).splitlines()
    assert "…" not in roomy[1] and "  " in roomy[1]


def test_every_control_or_format_character_is_shown_escaped():
    assert printable("ok\x1b[8m\x9b\u202e\u2028\r\nrow\x7f") == (
        "ok\\x1b[8m\\x9b\\u202e\\u2028\\x0d\\x0arow\\x7f")
    assert printable("x" * 500, 10) == "x" * 9 + "…"
