"""The privileged updater against a scratch root: side-by-side installs, an atomic switch, a
commit only when healthy, a switch back by itself otherwise, and a working release after a
kill at every step.

Real parts: the updater runs as its own process (``python -m kiosk.ops.updater``), makes
real venvs and installs real wheels with pip (toy kiosks: tests/releases.py); only
systemctl is a stub, which starts ``/opt/kiosk/current/bin/kiosk`` the way
kiosk.service's ExecStart would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kiosk.provisioning.releases import read_status
from kiosk.trust.signing import Signer, public_key_text
from tests.releases import SYSTEMCTL, toy_release

HEALTH_S = 1.0
START_S = 2.0


@dataclass
class Kiosk:
    """A scratch root with a toy kiosk's releases, and the release key that signs them."""

    root: Path
    signer: Signer
    releases: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def opt(self) -> Path:
        return self.root / "opt" / "kiosk"

    def link(self, name: str) -> str | None:
        try:
            return Path(os.readlink(self.opt / name)).name
        except OSError:
            return None

    def status(self) -> dict[str, object]:
        return read_status(self.opt / "release.json").body()

    def request(self, version: str, behaviour: str = "healthy", *, downgrade: bool = False,
                min_previous: str = "0", signer: Signer | None = None) -> dict[str, object]:
        """What the kiosk leaves for the updater: the fetched files and its request."""
        folder = self.releases / f"{version}-{behaviour}"
        manifest = toy_release(folder, signer or self.signer, version, behaviour,
                               min_previous=min_previous)
        files = self.root / "var/lib/kiosk/update/files" / version
        files.mkdir(parents=True, exist_ok=True)
        for file in manifest.release.files:
            (files / file.name).write_bytes((folder / file.name).read_bytes())
        request = {"manifest": manifest.to_json(), "downgrade": downgrade}
        (self.root / "var/lib/kiosk/update/request.json").write_text(json.dumps(request))
        return request

    def updater(self, action: str = "run", crash_at: str = "") -> subprocess.CompletedProcess[str]:
        env = {**self.env, **({"KIOSK_UPDATER_CRASH_AT": crash_at} if crash_at else {})}
        return subprocess.run([sys.executable, "-m", "kiosk.ops.updater", action, "--root",
                               str(self.root)], env=env, capture_output=True, text=True,
                              timeout=300)

    def runs(self) -> str:
        """The version ``current/bin/kiosk`` reports (what a boot would start)."""
        result = subprocess.run([str(self.opt / "current" / "bin" / "kiosk"), "--version"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def stop(self) -> None:
        pidfile = self.root / "run" / "kiosk.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A scratch root where toy release 1.0 was installed and committed by the updater, and a
    copy of it: each test starts from that copy, at the same path (a venv cannot move)."""
    base = tmp_path_factory.mktemp("updater")
    root = base / "root"
    signer = Signer.generate()
    (root / "etc/kiosk").mkdir(parents=True)
    (root / "etc/kiosk/kiosk.toml").write_text(
        f'[update]\nrelease_keys = ["{public_key_text(signer.public)}"]\n'
        f"health_s = {HEALTH_S}\nstart_s = {START_S}\n")
    for folder in ("var/lib/kiosk/update", "run/kiosk", "opt/kiosk"):
        (root / folder).mkdir(parents=True)
    stubs = base / "bin"
    stubs.mkdir()
    (stubs / "systemctl").write_text(SYSTEMCTL.format(root=root))
    (stubs / "systemctl").chmod(0o755)
    k = Kiosk(root, signer, base / "releases",
              {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"})
    k.request("1.0")
    result = k.updater()
    k.stop()
    assert result.returncode == 0, result.stderr
    assert (k.link("current"), k.link("committed")) == ("1.0", "1.0"), result.stderr
    (root / "run/restarts").unlink()
    shutil.copytree(root, base / "template", symlinks=True)
    return k, base / "template"


@pytest.fixture
def kiosk(installed):
    k, template = installed
    shutil.rmtree(k.root)
    shutil.copytree(template, k.root, symlinks=True)
    yield k
    k.stop()


def test_a_healthy_release_is_installed_beside_the_old_one_and_committed(kiosk):
    kiosk.request("2.0")
    result = kiosk.updater()
    assert result.returncode == 0, result.stderr
    assert (kiosk.link("current"), kiosk.link("committed")) == ("2.0", "2.0"), result.stderr
    assert kiosk.status() == {"running": "2.0", "trying": None, "last_failure": None}
    assert kiosk.runs() == "2.0"
    assert (kiosk.opt / "releases" / "1.0" / "bin" / "kiosk").exists()  # the one before, kept
    assert not (kiosk.root / "var/lib/kiosk/update/request.json").exists()
    assert not (kiosk.opt / "work.json").exists()
    # Two kept: a third commit prunes the oldest.
    kiosk.request("3.0")
    assert kiosk.updater().returncode == 0
    assert sorted(p.name for p in (kiosk.opt / "releases").iterdir()) == ["2.0", "3.0"]


@pytest.mark.parametrize("behaviour, reason", [
    ("import-error", "kiosk.service failed: systemd stopped restarting it"),
    ("offline", "never connected to the broker"),
    ("crash", "restarted while on trial"),
    ("unhealthy", "not connected to the broker"),
])
def test_a_release_that_fails_on_trial_is_switched_back_by_itself(kiosk, behaviour, reason):
    kiosk.request("2.0", behaviour)
    result = kiosk.updater()
    assert result.returncode == 0, result.stderr
    assert (kiosk.link("current"), kiosk.link("committed")) == ("1.0", "1.0")
    status = kiosk.status()
    assert status["running"] == "1.0" and status["trying"] is None
    failure = status["last_failure"]
    assert isinstance(failure, dict) and failure["version"] == "2.0"
    assert reason in failure["reason"], failure
    assert kiosk.runs() == "1.0"
    assert not (kiosk.opt / "releases" / "2.0").exists()
    assert (kiosk.root / "run/restarts").read_text().count("restart") == 2  # 2.0, then 1.0


@pytest.mark.parametrize("change, reason", [
    ("older", "older than 1.0"),
    ("downgrade-asked", "update.allow_downgrade"),  # the kiosk's word alone is not enough
    ("same", "already running"),
    ("min-previous", "needs 1.5 or newer"),
    ("foreign-key", "unknown key id"),
    ("tampered-file", "SHA-256 differs"),
    ("symlinked-file", "not fetched"),
])
def test_the_updater_refuses_what_it_cannot_verify_or_may_not_install(kiosk, change, reason):
    version = {"older": "0.5", "downgrade-asked": "0.5", "same": "1.0"}.get(change, "2.0")
    request = kiosk.request(version, min_previous="1.5" if change == "min-previous" else "0",
                            signer=Signer.generate() if change == "foreign-key" else None,
                            downgrade=change == "downgrade-asked")
    files = kiosk.root / "var/lib/kiosk/update/files" / version
    kiosk_wheel = files / request["manifest"]["release"]["kiosk"]  # type: ignore[index]
    if change == "tampered-file":
        kiosk_wheel.write_bytes(kiosk_wheel.read_bytes()[:-1] + b"!")
    elif change == "symlinked-file":
        kiosk_wheel.unlink()
        kiosk_wheel.symlink_to(kiosk.root / "etc/kiosk/kiosk.toml")
    result = kiosk.updater()
    assert result.returncode == 0, result.stderr
    assert (kiosk.link("current"), kiosk.link("committed")) == ("1.0", "1.0")
    failure = kiosk.status()["last_failure"]
    assert isinstance(failure, dict) and reason in failure["reason"], failure
    assert sorted(p.name for p in (kiosk.opt / "releases").iterdir()) == ["1.0"]
    assert not (kiosk.root / "run/restarts").exists()  # the kiosk was never touched


STEPS = ["accepted", "verified", "copied", "installed", "trying", "switched", "restarted",
         "healthy", "committed"]


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_boots_into_a_working_release(kiosk, step):
    kiosk.request("2.0")
    killed = kiosk.updater(crash_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    kiosk.stop()  # the power cut takes the kiosk down too
    boot = kiosk.updater("boot")
    assert boot.returncode == 0, boot.stderr
    expected = "2.0" if step == "committed" else "1.0"
    assert kiosk.link("current") == kiosk.link("committed") == expected
    assert kiosk.runs() == expected
    status = kiosk.status()
    assert status["trying"] is None and not (kiosk.opt / "work.json").exists()
    if expected == "1.0":
        failure = status["last_failure"]
        assert isinstance(failure, dict) and failure["version"] == "2.0"
        assert "interrupted" in failure["reason"]
        # Nothing half-installed is left; a kill mid-install does not stop the next order.
        assert all((p / ".complete").exists() for p in (kiosk.opt / "releases").iterdir())
        if step == "copied":
            kiosk.request("2.0")
            assert kiosk.updater().returncode == 0
            assert kiosk.link("committed") == "2.0"


def test_an_updater_that_fails_mid_trial_leaves_no_release_on_trial(kiosk):
    # The link cannot be replaced (here: a folder where its temporary name goes; in the
    # field: a full disk): the updater fails, and says so, but nothing stays on trial.
    (kiosk.opt / ".current.new").mkdir()
    kiosk.request("2.0")
    result = kiosk.updater()
    assert result.returncode == 1 and "the trial of 2.0 failed" in result.stderr
    assert (kiosk.link("current"), kiosk.link("committed")) == ("1.0", "1.0")
    status = kiosk.status()
    assert status["trying"] is None and status["last_failure"]["version"] == "2.0"  # type: ignore[index]
    assert not (kiosk.opt / "work.json").exists()
