"""``tools/secure-broker``: the shipped secured broker on this machine, to try the staff path.

One command makes (or reuses) everything in one folder: a CA and certificates
with ``tools/make-certs`` (a kiosk, a staff member, the backend, Home
Assistant), the shipped ``config/mosquitto/loyalty.conf`` with only its port and
file paths moved (loopback only), a staff signing key, and ready configs for a
simulated kiosk that trusts that key (``kiosk.toml``) and for ``kioskctl``
(``kioskctl.toml``). Then it runs mosquitto in the foreground as the current
user until Ctrl-C, and prints the commands that start the rest.

It is the same broker config as in production; what differs is only where the
files are and that nobody but this user and this machine can reach it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from kiosk.sim.broker import BrokerError, Mosquitto, find_mosquitto, secure_drop_in
from kiosk.staff.certs import make_certs
from kiosk.staff.keyring import Keyring
from kiosk.trust import pki

KIOSK, STAFF, BACKEND, HOME_ASSISTANT = "trial-kiosk", "admin", "loyalty", "home"
SITE = "trial-shop"
DEFAULT_PORT = 8883


@dataclass(frozen=True)
class Trial:
    """The folder's files, by what they are for."""

    folder: Path
    port: int

    def cert(self, identity: str) -> tuple[Path, Path]:
        """``(certificate, key)`` of a client identity (``staff:admin``, ``trial-kiosk``)."""
        stem = pki.file_stem(identity)
        return self.folder / f"{stem}.crt", self.folder / f"{stem}.key"

    @property
    def ca(self) -> Path:
        """The CA certificate every client checks the broker against."""
        return self.folder / "ca.crt"

    @property
    def keys(self) -> Path:
        """The staff signing keys (kioskctl's ``keys.dir``)."""
        return self.folder / "keys"


def prepare(folder: Path, port: int, shipped_conf: str) -> Trial:
    """Make what is missing in ``folder`` (a second run keeps the CA, keys and state)."""
    trial = Trial(folder.resolve(), port)
    if not trial.ca.exists():
        make_certs(trial.folder, kiosks=[KIOSK], staff=[STAFF], backends=[BACKEND],
                   home_assistants=[HOME_ASSISTANT])
    keyring = Keyring(trial.keys)
    if not (trial.keys / f"{STAFF}.key").exists():
        keyring.generate(STAFF)
    public = next(key.public for key in keyring.list() if key.name == STAFF)
    (trial.folder / "broker").mkdir(exist_ok=True)
    (trial.folder / "broker" / "loyalty.conf").write_text(
        secure_drop_in(shipped_conf, trial.folder, port))
    (trial.folder / "kiosk.toml").write_text(_kiosk_toml(trial, public))
    (trial.folder / "kioskctl.toml").write_text(_kioskctl_toml(trial))
    return trial


def _tls(trial: Trial, identity: str) -> str:
    cert, key = trial.cert(identity)
    return (f'host = "localhost"\nport = {trial.port}\ntls = true\n'
            f"ca_file = {json.dumps(str(trial.ca))}\ncert_file = {json.dumps(str(cert))}\n"
            f"key_file = {json.dumps(str(key))}\n")


def _kiosk_toml(trial: Trial, staff_key: str) -> str:
    state = trial.folder / "kiosk-state"
    path = json.dumps  # a JSON string is a TOML basic string
    return (f"# A simulated kiosk on the trial broker (made by tools/secure-broker).\n"
            f'[kiosk]\ndevice_id = "{KIOSK}"\nsite = "{SITE}"\nstate_dir = {path(str(state))}\n\n'
            f"[mqtt]\n{_tls(trial, KIOSK)}\n"
            f"[staff]\ntrusted_keys = [{path(staff_key)}]\n\n"
            f'[camera]\nbackend = "sim"\nspool_dir = {path(str(state / "camera"))}\n\n'
            f'[serial]\nbackend = "sim"\nsim_link = {path(str(state / "serial"))}\n\n'
            f'[display]\nbackend = "sim"\nsim_png = {path(str(state / "display.png"))}\n\n'
            f'[lights]\nbackend = "sim"\nsim_state = {path(str(state / "lights.json"))}\n')


def _kioskctl_toml(trial: Trial) -> str:
    return (f"# kioskctl on the trial broker as staff:{STAFF} (made by tools/secure-broker).\n"
            f"[mqtt]\n{_tls(trial, pki.STAFF + STAFF)}\n"
            f'[keys]\ndir = {json.dumps(str(trial.keys))}\nsign_with = "{STAFF}"\n')


def next_steps(trial: Trial) -> str:
    """What to run in other terminals, from the repository's folder."""
    cert, key = trial.cert(pki.BACKEND + BACKEND)
    folder = trial.folder
    return "\n".join([
        f"secure broker: mosquitto on localhost:{trial.port} (TLS, client certificates, the "
        f"shipped ACL), files in {folder}",
        "In other terminals, from the repository:",
        f"  .venv/bin/kiosk backend --host localhost --port {trial.port} --db "
        f"{folder}/ledger.db --ca-file {trial.ca} --cert-file {cert} --key-file {key}",
        f"  KIOSK_CONFIG={folder}/kiosk.toml .venv/bin/kiosk run",
        f"  .venv/bin/kiosk card LOY-ALICE01 --spool {folder}/kiosk-state/camera",
        f"  .venv/bin/kioskctl --config {folder}/kioskctl.toml list",
        f"  .venv/bin/kioskctl --config {folder}/kioskctl.toml cmd {KIOSK} ping",
        f"  KIOSK_CONFIG={folder}/kiosk.toml .venv/bin/kiosk status --cert-file "
        f"{trial.cert(pki.HOME_ASSISTANT + HOME_ASSISTANT)[0]} --key-file "
        f"{trial.cert(pki.HOME_ASSISTANT + HOME_ASSISTANT)[1]}",
        "Ctrl-C stops the broker; run again to go on with the same files.",
    ])


def main(argv: list[str] | None = None) -> int:
    """``tools/secure-broker [FOLDER] [--port N]``."""
    parser = argparse.ArgumentParser(prog="secure-broker", description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", default="trial", type=Path,
                        help="where the files go (default: ./trial)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"loopback port (default {DEFAULT_PORT})")
    parser.add_argument("--conf", type=Path, required=True,
                        help="the shipped drop-in (config/mosquitto/loyalty.conf)")
    args = parser.parse_args(argv)
    if find_mosquitto() is None:
        print("secure-broker: mosquitto is not installed (apt-get install mosquitto)",
              file=sys.stderr)
        return 1
    trial = prepare(args.folder, args.port, args.conf.read_text())
    broker = Mosquitto(trial.folder / "broker", args.port,
                       drop_in=(trial.folder / "broker" / "loyalty.conf").read_text())
    try:
        broker.start()
    except BrokerError as exc:
        print(f"secure-broker: {exc}\n{broker.log_text()}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(next_steps(trial), flush=True)
    while not stop.wait(1.0):
        if not broker.running:
            print(f"secure-broker: mosquitto stopped\n{broker.log_text()}", file=sys.stderr)
            return 1
    broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
