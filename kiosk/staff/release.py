"""``kioskctl release``: make a release from a checkout, sign it, publish it.

A release is a folder: the kiosk's wheel, the wheels of every dependency for each
target machine (``pip download --only-binary=:all: --platform …``: nothing is compiled
on a kiosk), and ``manifest.json``. ``build`` writes the manifest unsigned; ``sign``
adds the release key's signature and the URL the files will be served from;
``publish`` copies the folder to ``<served>/<version>/``.

Dependencies come from PyPI for the kiosk's Python (bookworm: 3.11). pip evaluates
environment markers against the machine it runs on, not the target, so a dependency
with no wheel for a target (zxing-cpp has none for armv7l) makes that target fail
here, loudly, and it is left out of ``machines``; the kiosk refuses a release not
built for its machine. The ``pi-io`` extras (lgpio, spidev, evdev) come from Raspberry
Pi OS's archive (tools/install.sh installs them; each release venv sees them through
``--system-site-packages``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kiosk import KioskError
from kiosk.staff.keyring import make_key
from kiosk.trust.release import (
    Manifest,
    ManifestError,
    Release,
    ReleaseFile,
    parse_manifest,
    parse_release,
    sha256_of,
    sign,
)
from kiosk.trust.signing import SignatureError, Signer

MANIFEST = "manifest.json"
PYTHON = "3.11"
"""Raspberry Pi OS bookworm's Python."""
GLIBC = 36
"""Raspberry Pi OS bookworm's glibc 2.36: the newest manylinux tag its kiosks run."""


class ReleaseError(KioskError):
    """A release that cannot be built, signed or published; the text says why."""


def platform_tags(machine: str) -> list[str]:
    """The wheel platform tags a kiosk of ``machine`` on bookworm runs."""
    return [*(f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC, 16, -1)),
            f"manylinux2014_{machine}", f"linux_{machine}"]


def machine_of(wheel: str) -> str:
    """Which machine a wheel is for, from its platform tag (``any``: pure Python)."""
    tag = wheel.removesuffix(".whl").rsplit("-", 1)[-1]
    for machine in ("aarch64", "armv7l", "x86_64"):
        if tag.endswith(machine):
            return machine
    if tag == "any":
        return "any"
    raise ReleaseError(f"{wheel}: a wheel for no machine a kiosk has")


def build(checkout: Path, out: Path, machines: list[str], *, python: str = PYTHON,
          min_previous: str = "", with_deps: bool = True, isolated: bool = True) -> Release:
    """Build the kiosk's wheel from ``checkout`` and fetch its dependencies for ``machines``
    into ``out``; write the unsigned manifest. ``with_deps=False``: the kiosk's wheel alone
    (tries the build offline; the updater, which installs from the release's own wheels,
    cannot install it).
    ``isolated=False``: build with this environment's setuptools (offline) instead of a
    fresh one from PyPI."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty")
    with tempfile.TemporaryDirectory() as temp:
        # From a clean copy: setuptools reuses a build/ folder in the tree, and a file
        # deleted since the last build would still ship.
        source = Path(temp) / "src"
        shutil.copytree(checkout, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "state"))
        _pip(["wheel", "--quiet", "--no-deps", *([] if isolated else ["--no-build-isolation"]),
              "--wheel-dir", str(out.absolute()), str(source)], "build the kiosk's wheel")
    kiosk = next((p.name for p in out.glob("loyalty_kiosk-*.whl")), None)
    if kiosk is None:
        raise ReleaseError("pip built no loyalty_kiosk wheel")
    version = kiosk.split("-")[1]
    built: list[str] = []
    for machine in machines if with_deps else []:
        tags = [option for tag in platform_tags(machine) for option in ("--platform", tag)]
        try:
            _pip(["download", "--quiet", "--only-binary=:all:", *tags, "--python-version",
                  python, "--implementation", "cp", "--dest", str(out), str(out / kiosk),
                  "pip"],  # the updater runs the next update with this release's pip
                 f"fetch the dependencies' wheels for {machine}")
        except ReleaseError as exc:
            print(f"kioskctl: {machine} left out: {exc}", file=sys.stderr)
            continue
        built.append(machine)
    if with_deps and not built:
        raise ReleaseError("no target machine has wheels for every dependency")
    files = [ReleaseFile(p.name, p.stat().st_size, sha256_of(p), machine_of(p.name))
             for p in sorted(out.glob("*.whl"))]
    release = parse_release({
        "version": version, "min_previous": min_previous or version, "python": python,
        "machines": built if with_deps else machines, "kiosk": kiosk, "url": "",
        "files": [vars(f) for f in files]})
    (out / MANIFEST).write_text(json.dumps({"v": 1, "release": release.body()}, indent=1) + "\n")
    return release


def new_key(path: Path) -> str:
    """A new release key at ``path`` (mode 600; refuses to overwrite); its public key."""
    try:
        return make_key(path)
    except FileExistsError:
        raise ReleaseError(f"{path} exists already") from None


def sign_release(folder: Path, key: Path, url: str) -> Manifest:
    """Sign the release in ``folder`` with the release key file ``key``, for files served at
    ``url``; the files are hashed again first, so what is signed is what is there."""
    data = _read(folder / MANIFEST)
    try:
        release = parse_release(data.get("release"))
        signer = Signer.from_text(key.read_text())
    except ManifestError as exc:
        raise ReleaseError(f"{folder / MANIFEST}: {exc}") from None
    except (OSError, SignatureError, ValueError) as exc:
        raise ReleaseError(f"{key}: not a release key ({exc})") from None
    for file in release.files:
        path = folder / file.name
        if not path.is_file() or path.stat().st_size != file.size or sha256_of(path) != file.sha256:
            raise ReleaseError(f"{file.name}: missing or changed since the build")
    url = url if url.endswith("/") else url + "/"
    try:
        signed = sign(parse_release({**release.body(), "url": url}), signer)
    except ManifestError as exc:
        raise ReleaseError(str(exc)) from None
    (folder / MANIFEST).write_text(json.dumps(signed.to_json(), indent=1) + "\n")
    return signed


def load_signed(path: Path) -> Manifest:
    """A signed manifest file (``rollout start --update``); not yet verified."""
    try:
        return parse_manifest(_read(path))
    except ManifestError as exc:
        raise ReleaseError(f"{path}: {exc}") from None


def publish(folder: Path, served: Path) -> Path:
    """Copy the signed release to ``served/<version>/`` (what the web server serves)."""
    manifest = load_signed(folder / MANIFEST)
    target = served / manifest.release.version
    if target.exists():
        raise ReleaseError(f"{target} exists already: a published release is never changed")
    temp = served / f".{manifest.release.version}.partial"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    for name in [MANIFEST, *(f.name for f in manifest.release.files)]:
        shutil.copy2(folder / name, temp / name)
    temp.rename(target)  # the server never serves half a release
    return target


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ReleaseError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReleaseError(f"{path}: not a manifest")
    return data


def _pip(args: list[str], what: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise ReleaseError(f"could not {what}: {' '.join(lines[-2:])[:300]}")


