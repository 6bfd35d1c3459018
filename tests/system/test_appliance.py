"""The kiosk as an appliance: the hardened systemd unit and a set-up that touches nothing
it does not need (no apt-get, no network) once everything is there."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk import __version__
from kiosk.provisioning.releases import read_status
from tests import ROOT, UNIT

MAX_EXPOSURE = 2.0


@pytest.mark.parametrize("unit", [UNIT, UNIT.with_name("kiosk-fleet.service")],
                         ids=["kiosk", "kiosk-fleet"])
def test_the_unit_is_hardened_to_an_exposure_of_at_most_2(unit):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: tools/dev.sh setup installs it (package systemd)"
    result = subprocess.run([analyze, "security", "--offline=yes", str(unit)],
                            capture_output=True, text=True, timeout=60)
    score = re.search(rf"Overall exposure level for {re.escape(unit.name)}: (\d+\.\d+)",
                      result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("unit", ["kiosk-updater.service", "kiosk-release-check.service"])
def test_the_updater_units_are_hardened_to_an_exposure_of_at_most_1(unit):
    # They run as root (the score counts that): no network, no devices, writes only to
    # /opt/kiosk (and the kiosk's spool), one capability at most.
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                             str(ROOT / "systemd" / unit)],
                            capture_output=True, text=True, timeout=60)
    score = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)",
                      result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 1.0, result.stdout
    text = (ROOT / "systemd" / unit).read_text()
    assert "PrivateNetwork=yes" in text and "ExecStart=/opt/kiosk/committed/bin/" in text


def test_a_config_error_exits_2_and_systemd_does_not_restart_it(tmp_path, unit_settings):
    settings = unit_settings
    assert "2" in settings["RestartPreventExitStatus"][0].split()
    assert settings["StartLimitBurst"] and settings["StartLimitIntervalSec"]
    assert int(settings["UMask"][0], 8) & 0o007 == 0o007  # nothing world-readable
    bad = tmp_path / "kiosk.toml"
    bad.write_text("[mqtt]\nport = 0\n")
    result = subprocess.run([sys.executable, "-m", "kiosk.cli", "run", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "mqtt.port" in result.stderr


# --- tools/dev.sh -------------------------------------------------------------------


def _offline_path(tmp_path: Path, *, loud_ldconfig: bool = False) -> dict[str, str]:
    """An environment where apt-get, apt and sudo fail and record that they were called,
    and no proxy or index lets pip reach a network."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("apt-get", "apt", "sudo"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/called"\nexit 100\n')
        stub.chmod(0o755)
    if loud_ldconfig:
        # The real cache first, then 2 MiB more: a reader that stops at the first match
        # leaves this ldconfig to die of SIGPIPE, as the real one did 20 times in 300.
        stub = stubs / "ldconfig"
        stub.write_text('#!/bin/bash\n/sbin/ldconfig -p || exit\n'
                        'yes "	libpadding.so.1 (libc6) => /usr/lib/libpadding.so.1" '
                        '| head -c 2000000\n')
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "PIP_NO_INDEX": "1",
            "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def _set_up_by_dev_sh() -> bool:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return (ROOT / ".venv" / f".installed-{digest}").exists()


@pytest.mark.skipif(not _set_up_by_dev_sh(), reason="the checkout was not set up by tools/dev.sh")
@pytest.mark.parametrize("loud_ldconfig", [False, True], ids=["ldconfig", "sigpipe-ldconfig"])
def test_setting_up_again_offline_runs_no_apt_get(tmp_path, loud_ldconfig):
    env = _offline_path(tmp_path, loud_ldconfig=loud_ldconfig)
    for _ in range(2):
        result = subprocess.run([str(ROOT / "tools" / "dev.sh"), "setup"], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert not (tmp_path / "called").exists(), (tmp_path / "called").read_text()
        assert "installing" not in result.stderr


# --- tools/install.sh -----------------------------------------------------------------

INSTALL = ROOT / "tools" / "install.sh"
PIP_OFFLINE = "--no-deps"  # the kiosk itself; its dependencies are pip's and apt's business


def _scratch_root(path: Path) -> Path:
    """A target tree with the accounts a fresh Raspberry Pi OS has before the installer."""
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (path / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (path / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\nvideo:x:44:\n")
    (path / "etc" / "gshadow").write_text("root:*::\ndialout:*::\nvideo:*::\n")
    return path


def _install(root: Path, *args: str) -> str:
    result = subprocess.run([str(INSTALL), "--root", str(root), "--pip-options", PIP_OFFLINE,
                             *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _tree(root: Path) -> dict[str, tuple[int, int, int, int, float]]:
    """Every path under ``root`` with its mode, owner, group, size and modification time."""
    return {str(p.relative_to(root)): (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_mtime)
            for p in root.rglob("*") for s in [p.lstat()]}


def _account(root: Path, name: str, table: str = "passwd") -> list[str] | None:
    for line in (root / "etc" / table).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A scratch root after one dry run (which must change nothing) and one install."""
    if os.geteuid() != 0:
        pytest.skip("creates users and owners in the scratch root")
    root = _scratch_root(tmp_path_factory.mktemp("install") / "root")
    before = _tree(root)
    assert "would create system user kiosk" in _install(root, "--dry-run")
    assert _tree(root) == before
    _install(root)
    return root


def test_install_puts_every_file_in_place_and_a_second_run_changes_nothing(installed,
                                                                           tmp_path,
                                                                           unit_settings):
    root = installed
    kiosk = _account(root, "kiosk")
    assert kiosk and kiosk[5:] == ["/var/lib/kiosk", "/usr/sbin/nologin"]
    uid, gid = int(kiosk[2]), int(kiosk[3])
    assert uid < 1000  # a system user
    for group in ("gpio", "video", "dialout", "i2c", "spi", "input"):
        entry = _account(root, group, "group")
        assert entry and "kiosk" in entry[3].split(","), group

    def owned(path: str, mode: int, owner: int, group: int) -> None:
        info = (root / path).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, owner, group), path

    owned("etc/kiosk", 0o750, 0, gid)
    # systemd sets ConfigurationDirectory= to its mode at every start (default 0755, and a
    # warning in the journal each time it differs): the unit asks for the installer's.
    assert unit_settings["ConfigurationDirectory"] == ["kiosk"]
    assert unit_settings["ConfigurationDirectoryMode"] == ["0750"]
    owned("etc/kiosk/kiosk.toml", 0o640, 0, gid)
    owned("var/lib/kiosk", 0o750, uid, gid)
    owned("etc/systemd/system/kiosk.service", 0o644, 0, 0)
    assert (root / "etc/kiosk/kiosk.toml").read_bytes() == (ROOT / "config/kiosk.toml").read_bytes()
    assert (root / "etc/systemd/system/kiosk.service").read_bytes() == UNIT.read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/kiosk.service"
    assert wants.is_symlink()
    assert (root / "etc/modules-load.d/kiosk.conf").read_text().split()[-3:] == [
        "usbserial", "cdc_acm", "i2c-dev"]
    assert (root / "etc/udev/rules.d/99-kiosk-scanner.rules").exists()
    # Raspberry Pi OS gives the hardware groups their nodes; plain Debian leaves them root's.
    rules = (root / "etc/udev/rules.d/60-kiosk-devices.rules").read_text()
    for rule in ('SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"',
                 'SUBSYSTEM=="i2c-dev", GROUP="i2c", MODE="0660"',
                 'SUBSYSTEM=="spidev", GROUP="spi", MODE="0660"'):
        assert rule in rules
    # The releases layout (docs/updates.md): this checkout's release is current and committed.
    venv = root / "opt/kiosk/releases" / __version__
    assert os.readlink(root / "opt/kiosk/current") == f"releases/{__version__}"
    assert os.readlink(root / "opt/kiosk/committed") == f"releases/{__version__}"
    assert read_status(root / "opt/kiosk/release.json").running == __version__
    assert (venv / ".complete").exists()
    assert "/opt/kiosk/current/bin/kiosk run" in unit_settings["ExecStart"][0]
    for unit in ("kiosk-updater.path", "kiosk-release-check.service"):
        assert (root / "etc/systemd/system/multi-user.target.wants" / unit).is_symlink(), unit
    assert (root / "etc/systemd/system/kiosk-updater.service").read_bytes() == (
        ROOT / "systemd/kiosk-updater.service").read_bytes()
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / "bin" / "kiosk").is_file()
    # The kiosk itself is in the venv (its dependencies were left to pip's index and apt).
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import kiosk; print(kiosk.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert where.stdout.startswith(str(venv / "lib")), where.stdout + where.stderr

    (root / "etc/kiosk/kiosk.toml").write_text('[mqtt]\nhost = "broker.shop"\n')
    installed = _tree(root)
    assert _install(root).splitlines()[-1] == "install.sh: 0 change(s)"
    assert _tree(root) == installed  # the shop's config is kept, nothing else moves


def test_install_moves_the_old_single_venv_layout_to_the_releases_layout(installed, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    for link in ("current", "committed", "release.json"):
        (root / "opt/kiosk" / link).unlink()
    (root / "opt/kiosk/releases" / __version__).rename(root / "opt/kiosk/.venv")
    out = _install(root)
    assert f"switch /opt/kiosk/current to {__version__}" in out
    assert "remove /opt/kiosk/.venv" in out
    assert not (root / "opt/kiosk/.venv").exists()
    assert (root / "opt/kiosk/current/bin/kiosk").is_file()


def test_uninstall_keeps_config_and_data_unless_asked(installed, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    (root / "var/lib/kiosk/kiosk.db").write_bytes(b"visits")
    _install(root, "--uninstall")
    for gone in ("etc/systemd/system/kiosk.service", "opt/kiosk",
                 "etc/systemd/system/multi-user.target.wants/kiosk.service",
                 "etc/modules-load.d/kiosk.conf", "etc/udev/rules.d/99-kiosk-scanner.rules",
                 "etc/udev/rules.d/60-kiosk-devices.rules", "etc/systemd/system/kiosk-updater.path",
                 "etc/systemd/system/multi-user.target.wants/kiosk-updater.path"):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), gone
    assert (root / "var/lib/kiosk/kiosk.db").read_bytes() == b"visits"
    assert (root / "etc/kiosk/kiosk.toml").exists() and _account(root, "kiosk")
    _install(root, "--uninstall", "--purge")
    assert not (root / "var/lib/kiosk").exists() and not (root / "etc/kiosk").exists()
    assert _account(root, "kiosk") is None
