"""``tools/secure-broker``: the shipped secured broker in one command, and every command it
prints run as printed (a backend, a TLS kiosk, a card, kioskctl, ``kiosk status``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.testing.broker import find_mosquitto, free_port
from kiosk.testing.harness import wait_for
from tests import ROOT

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
VENV_BIN = os.path.dirname(sys.executable)


def _shell(command: str, log: Path | None = None) -> subprocess.Popen[str]:
    """Run a printed command as a shell in the repository would (.venv/bin as printed)."""
    out = log.open("w") if log else subprocess.PIPE
    return subprocess.Popen(["bash", "-c", command.replace(".venv/bin/", f"{VENV_BIN}/")],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)


def test_the_secured_broker_in_one_command_runs_the_staff_path(tmp_path):
    port = free_port()
    broker = subprocess.Popen([str(ROOT / "tools" / "secure-broker"), str(tmp_path / "trial"),
                               "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert broker.stdout is not None
    started: list[subprocess.Popen[str]] = []
    try:
        printed = [broker.stdout.readline() for _ in range(9)]
        assert printed[0].startswith(f"secure broker: mosquitto on localhost:{port} (TLS")
        commands = [line.strip() for line in printed if line.startswith("  ")]
        backend, kiosk, card, listing, ping, status = commands
        started += [_shell(backend, tmp_path / "backend.log"),
                    _shell(kiosk, tmp_path / "kiosk.log")]
        wait_for(lambda: (tmp_path / "trial" / "kiosk-state" / "camera").exists(), 20,
                 "the kiosk to start")
        time.sleep(1.0)
        assert _shell(card).wait(30) == 0

        def answered(command: str) -> str | None:
            run = _shell(command)
            out, _ = run.communicate(timeout=60)
            return out if run.returncode == 0 else None

        # `kiosk status` exits 0 only when online, ready and nothing old is waiting
        out = wait_for(lambda: answered(status), 30, "kiosk status to say all is well")
        assert "online   yes" in out and "state    ready" in out
        assert "last     reply from the backend" in out
        assert "trial-kiosk  trial-shop  online  ready" in answered(listing)
        assert '"pong": true' in answered(ping)
        # without a reader's certificate it says exactly what it needs
        bare = answered(status.split(" --cert-file")[0])
        assert "online   not asked" in bare and "loyalty/trial-shop/trial-kiosk/status" in bare
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
        broker.send_signal(signal.SIGINT)
        _, errors = broker.communicate(timeout=30)
    assert broker.returncode == 0, errors
    assert all(process.returncode == 0 for process in started), [
        process.args for process in started]
