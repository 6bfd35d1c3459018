"""``kiosk selftest`` shows every screen and plays every pattern on the configured hardware."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import sim_config
from kiosk.ui.lights import PATTERNS
from kiosk.ui.samples import SCREENS


def test_selftest_cycles_every_screen_and_pattern_on_simulated_hardware(tmp_path):
    config = sim_config(tmp_path, 1883)
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))
    result = subprocess.run([sys.executable, "-m", "kiosk.cli", "selftest", "--config", str(path),
                             "--screen-s", "0.01", "--pattern-s", "0.01"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in SCREENS:
        assert f"selftest: screen {name}" in lines
    for name in PATTERNS:
        assert any(line.startswith(f"selftest: light {name}") for line in lines)
    assert "selftest: light reward, buzzer C5 E5 G5 C6" in lines
    assert lines[-1] == "selftest: done"
    assert (tmp_path / "display.png").exists()
    assert json.loads((tmp_path / "lights.json").read_text())["pattern"] == "off"


def test_selftest_says_when_a_device_is_missing(tmp_path):
    config = sim_config(tmp_path, 1883)
    config = replace(config, display=replace(config.display, backend="luma", i2c_port=77))
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(config))  # an I2C bus that does not exist
    result = subprocess.run([sys.executable, "-m", "kiosk.cli", "selftest", "--config", str(path),
                             "--screen-s", "0", "--pattern-s", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "selftest: PROBLEM display:" in result.stdout
