"""The shell blocks of README and docs/ that name a test here are run as they are written:
in a folder of their own that holds the checkout's tools/ and config/ and its .venv, with a
HOME of their own, each block with ``bash -e``. A block edited into something that fails
fails here (the rules: tests/docs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.trust.signing import Signer, public_key_text
from tests import ROOT
from tests.docs import Block, run_by

HERE = "tests/system/test_docs_commands.py"
VENV = Path(sys.prefix)

pytestmark = pytest.mark.skipif(not (VENV / "bin" / "activate").exists(),
                                reason="the tests do not run in a virtual environment")


class Workspace:
    """Where a user types the documented commands: a checkout's tools/ and config/, its
    .venv, and nothing else; HOME is a folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "checkout"
        self.folder.mkdir()
        for name in ("tools", "config"):
            (self.folder / name).symlink_to(ROOT / name)
        (self.folder / ".venv").symlink_to(VENV)
        self.home = folder / "home"
        self.home.mkdir()

    def env(self, *, activated: bool = True) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("KIOSK", "VIRTUAL_ENV"))}
        path = [entry for entry in env.get("PATH", "").split(os.pathsep)
                if Path(entry) != VENV / "bin"]
        env["PATH"] = os.pathsep.join([str(VENV / "bin")] * activated + path)
        env["HOME"] = str(self.home)
        return env

    def run(self, block: Block, substitute: dict[str, str] | None = None, *,
            activated: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
        script = block.commands()
        for placeholder, value in (substitute or {}).items():
            script = script.replace(placeholder, value)
        result = subprocess.run(["bash", "-e", "-c", script], cwd=self.folder, text=True,
                                env=self.env(activated=activated), capture_output=True,
                                timeout=120)
        if check:
            assert result.returncode == 0, (block.where, result.stdout, result.stderr)
        return result


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def blocks_for(test: str) -> list[Block]:
    found = run_by(f"{HERE}::{test}")
    assert found, f"no block names {test}"
    return found


def test_the_commands_are_on_the_path_as_readme_says(workspace):
    for block in blocks_for("test_the_commands_are_on_the_path_as_readme_says"):
        out = workspace.run(block, activated=False).stdout
        assert "usage: kiosk" in out and "usage: kioskctl" in out


def test_a_config_error_reads_as_documented(workspace):
    (block,) = blocks_for("test_a_config_error_reads_as_documented")
    (workspace.folder / "kiosk.toml").write_text('[mqtt]\nport = "1883x"\n')
    result = workspace.run(block, check=False)
    assert result.returncode == 2
    assert result.stderr + result.stdout == block.shown_output()


def test_member_cards_are_made_as_documented(workspace):
    (block,) = blocks_for("test_member_cards_are_made_as_documented")
    (workspace.folder / "ids.txt").write_text("M-1234567\nM-7654321\n")
    out = workspace.run(block).stdout
    for made in ("issuer.key", "card.png", "sheet.pdf"):
        assert (workspace.folder / made).stat().st_size > 0, made
    assert out.strip()  # card-key prints the public key


def test_certificates_are_made_as_documented(workspace):
    for block in blocks_for("test_certificates_are_made_as_documented"):
        workspace.run(block)
    pki = workspace.folder / "pki"
    for made in ("ca.crt", "ca.key", "broker.crt", "broker.key", "pi-0000abcd.crt",
                 "pi-0000abce.key", "staff-ann.crt", "backend-loyalty.key", "hass-home.crt",
                 "loyalty.acl"):
        assert (pki / made).is_file(), made
    assert "user hass:home" in (pki / "loyalty.acl").read_text()


def test_staff_keys_are_made_as_documented(workspace):
    (block,) = blocks_for("test_staff_keys_are_made_as_documented")
    colleague = public_key_text(Signer.generate().public)
    out = workspace.run(block, {"<KEY>": colleague}).stdout
    keys = workspace.home / ".config" / "kioskctl" / "keys"
    assert (keys / "ann.key").stat().st_mode & 0o777 == 0o600
    assert "ann" in out and "bob" in out and colleague in out
