"""Toy releases for the update tests: real wheels, installed by the real updater with pip.

A toy ``loyalty-kiosk`` wheel holds one module whose ``kiosk`` script behaves as a
release may in the field: healthy, unable to import, crash-looping, turning unhealthy,
or never connecting. It writes the same heartbeat the real kiosk writes
(``kiosk.provisioning.releases.write_heartbeat``'s format) where the stub systemctl
tells it to.
"""

from __future__ import annotations

import base64
import ensurepip
import hashlib
import json
import platform
import shutil
import sys
import zipfile
from pathlib import Path

from kiosk.staff.release import machine_of
from kiosk.trust.release import Manifest, Release, ReleaseFile, sign
from kiosk.trust.signing import Signer

TOY = '''
import json, os, subprocess, sys, time
{fault}

def beat(connected, state="ready"):
    path = os.environ["TOY_HEALTH"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({{"version": "{version}", "pid": os.getpid(), "connected": connected,
                   "state": state, "at": time.time()}}, f)
    os.replace(tmp, path)

def main():
    if sys.argv[1:] == ["--version"]:
        print("{version}")
        return 0
    with open(os.environ["TOY_PIDFILE"], "w") as f:
        f.write(str(os.getpid()))
    behaviour, started = "{behaviour}", time.monotonic()
    while True:
        age = time.monotonic() - started
        if behaviour == "crash" and age > 1.0:  # systemd's Restart= starts it again (twice)
            generation = int(os.environ.get("TOY_GENERATION", "0"))
            if generation < 2:
                subprocess.Popen([sys.argv[0], *sys.argv[1:]], start_new_session=True,
                                 env={{**os.environ, "TOY_GENERATION": str(generation + 1)}})
            return 0  # restarted already: systemd has not given up on it
        beat(behaviour != "offline" and not (behaviour == "unhealthy" and age > 0.5))
        time.sleep(0.3)
'''

SYSTEMCTL = '''#!/bin/sh
# The systemctl calls the updater makes, on kiosk.service, as systemd answers them: restart
# runs /opt/kiosk/current/bin/kiosk (ExecStart=); a kiosk that exits with an error marks
# the unit failed at once (systemd would after its start limit, 5 failures); reset-failed
# clears that.
root="{root}"
case "$1" in
    is-failed) [ -e "$root/run/kiosk.failed" ]; exit ;;
    reset-failed) rm -f "$root/run/kiosk.failed"; exit 0 ;;
    restart) ;;
    *) exit 0 ;;
esac
[ -f "$root/run/kiosk.pid" ] && kill "$(cat "$root/run/kiosk.pid")" 2>/dev/null
rm -f "$root/run/kiosk.pid"
echo restart >> "$root/run/restarts"
export TOY_HEALTH="$root/run/kiosk/release-health.json" TOY_PIDFILE="$root/run/kiosk.pid"
setsid sh -c '"$1" run; rc=$?; [ "$rc" -eq 0 ] || [ "$rc" -gt 128 ] || touch "$2"' \\
    sh "$root/opt/kiosk/current/bin/kiosk" \\
    "$root/run/kiosk.failed" >/dev/null 2>&1 < /dev/null &
exit 0
'''


def toy_wheel(folder: Path, version: str, behaviour: str = "healthy") -> Path:
    """A wheel of ``loyalty-kiosk`` ``version`` whose ``kiosk`` script does ``behaviour``:
    healthy, import-error, crash, unhealthy or offline."""
    fault = "import no_such_module_in_this_release" if behaviour == "import-error" else ""
    info = f"loyalty_kiosk-{version}.dist-info"
    files = {
        "toy_kiosk.py": TOY.format(fault=fault, version=version, behaviour=behaviour),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: loyalty-kiosk\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\nkiosk = toy_kiosk:main\n",
    }
    record = [f"{name},sha256={_b64(hashlib.sha256(text.encode()).digest())},{len(text.encode())}"
              for name, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"loyalty_kiosk-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def pip_wheel() -> Path:
    """The pip wheel Python bundles (a release carries pip for the next update)."""
    return next((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))


def toy_release(folder: Path, signer: Signer, version: str, behaviour: str = "healthy", *,
                min_previous: str = "0", url: str = "http://127.0.0.1:9/") -> Manifest:
    """A signed release of a toy kiosk (and pip) in ``folder``."""
    kiosk = toy_wheel(folder, version, behaviour)
    pip = folder / pip_wheel().name
    shutil.copy(pip_wheel(), pip)
    files = tuple(ReleaseFile(p.name, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest(),
                              machine_of(p.name)) for p in (kiosk, pip))
    release = Release(version, min_previous, f"{sys.version_info.major}.{sys.version_info.minor}",
                      (platform.machine(),), kiosk.name, url, files)
    manifest = sign(release, signer)
    (folder / "manifest.json").write_text(json.dumps(manifest.to_json()))
    return manifest


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
