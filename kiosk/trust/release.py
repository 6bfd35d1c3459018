"""A release manifest: what a software release is made of, signed by a *release* key.

The same code checks a manifest in three places that do not trust each other:
``kioskctl release sign`` (staff), the kiosk's ``update`` command (unprivileged) and
the privileged updater, which verifies it again itself before it installs anything.

On the wire (and in ``manifest.json`` beside the wheels)::

    {"v":1,"release":{"version":"0.2.0","min_previous":"0.1.0","python":"3.11",
       "machines":["aarch64","armv7l"],"kiosk":"loyalty_kiosk-0.2.0-py3-none-any.whl",
       "url":"https://updates.shop.example/releases/0.2.0/",
       "files":[{"name":"…whl","size":123,"sha256":"…","machine":"any"}, …]},
     "kid":"…","sig":"…"}

The signature covers a domain prefix of its own and the canonical JSON of
``release``, so neither a staff order's signature nor a command key can stand for a
release: the kiosk trusts release keys (``update.release_keys``, set only in its local
file) apart from the command keys. Every byte of every file is bound by its SHA-256,
so the transport (the shop's web server, a proxy, a USB stick) need not be trusted.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kiosk import KioskError
from kiosk.trust.signing import (
    SIGNATURE_BYTES,
    SignatureError,
    Signer,
    Verifier,
    b64decode,
    b64encode,
)

VERSION = 1
DOMAIN = b"loyalty-kiosk/release/v1\x00"
"""Prefix of every signed release: a signature over one is useless as anything else."""
MAX_FILES = 200
MAX_FILE_BYTES = 1 << 30
MACHINES = ("any", "aarch64", "armv7l", "x86_64")
"""``platform.machine()`` values a file may be for (``any``: a pure-Python wheel)."""
_VERSION = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")
_FILE = re.compile(r"^[A-Za-z0-9_.+-]{1,160}\.whl$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(KioskError, ValueError):
    """A manifest that is malformed, unsigned, or signed by a key not trusted for releases."""


@dataclass(frozen=True)
class ReleaseFile:
    """One wheel of a release."""

    name: str
    size: int
    sha256: str
    machine: str
    """``any`` or the ``platform.machine()`` it is built for."""


@dataclass(frozen=True)
class Release:
    """What a release is; the part of the manifest the signature covers."""

    version: str
    min_previous: str
    """The oldest running version this release may be installed over."""
    python: str
    """The ``major.minor`` of Python its compiled wheels are for."""
    machines: tuple[str, ...]
    kiosk: str
    """The file name of the kiosk's own wheel (the one ``pip install`` is asked for)."""
    url: str
    """Where the files are served (the manifest's folder); empty until it is signed."""
    files: tuple[ReleaseFile, ...]

    def files_for(self, machine: str) -> list[ReleaseFile]:
        """The files a kiosk of ``machine`` needs: its own compiled wheels and the pure ones."""
        return [file for file in self.files if file.machine in ("any", machine)]

    def body(self) -> dict[str, Any]:
        """The release as JSON data (lists, as :func:`parse_release` reads them)."""
        return {**asdict(self), "machines": list(self.machines),
                "files": [asdict(file) for file in self.files]}


@dataclass(frozen=True)
class Manifest:
    """A release and the proof of who signed it."""

    release: Release
    kid: str
    signature: bytes

    def verify(self, verifier: Verifier) -> Release:
        """The release, if a trusted release key signed it; else :class:`ManifestError`."""
        try:
            verifier.verify(self.kid, self.signature, signed_bytes(self.release))
        except SignatureError as exc:
            raise ManifestError(f"release signature: {exc} ({self.kid})") from None
        return self.release

    def to_json(self) -> dict[str, Any]:
        """The manifest as sent in an ``update`` order and written to ``manifest.json``."""
        return {"v": VERSION, "release": self.release.body(), "kid": self.kid,
                "sig": b64encode(self.signature)}


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, as a manifest lists it (read in 1 MiB pieces)."""
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def version_key(version: str) -> tuple[int, ...]:
    """``"1.2"`` as ``(1, 2, 0, 0)``: versions compare as numbers, part by part."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ManifestError(f"version {str(version)[:20]!r}: expected numbers and dots (1.2.3)")
    parts = tuple(int(part) for part in version.split("."))
    return parts + (0,) * (4 - len(parts))


def signed_bytes(release: Release) -> bytes:
    """The exact bytes a release signature covers."""
    return DOMAIN + json.dumps(release.body(), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=True, allow_nan=False).encode("ascii")


def sign(release: Release, signer: Signer) -> Manifest:
    """``release`` signed by the release key ``signer``."""
    return Manifest(release, signer.key_id, signer.sign(signed_bytes(release)))


def parse_release(body: Any) -> Release:
    """Check every field of a release body (untrusted input); :class:`ManifestError` if bad."""
    if not isinstance(body, dict):
        raise ManifestError("release: expected an object")
    expected = {"version", "min_previous", "python", "machines", "kiosk", "url", "files"}
    if set(body) != expected:
        raise ManifestError(f"release: expected the fields {', '.join(sorted(expected))}")
    version_key(body["version"])
    version_key(body["min_previous"])
    if not isinstance(body["python"], str) or not re.fullmatch(r"3\.\d{1,2}", body["python"]):
        raise ManifestError("release.python: expected 3.N")
    machines = body["machines"]
    if (not isinstance(machines, list) or not machines
            or not all(m in MACHINES[1:] for m in machines)):
        raise ManifestError(f"release.machines: expected a list of {', '.join(MACHINES[1:])}")
    url = body["url"]
    if not isinstance(url, str) or len(url) > 500 or (
            url and not url.startswith(("https://", "http://"))):
        raise ManifestError("release.url: expected an http(s) URL")
    files = body["files"]
    if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
        raise ManifestError(f"release.files: expected 1 to {MAX_FILES} files")
    parsed = tuple(_file(entry) for entry in files)
    names = [file.name for file in parsed]
    if len(set(names)) != len(names):
        raise ManifestError("release.files: a file is listed twice")
    if body["kiosk"] not in names:
        raise ManifestError("release.kiosk: not one of the files")
    return Release(body["version"], body["min_previous"], body["python"], tuple(machines),
                   body["kiosk"], url, parsed)


def parse_manifest(data: Any) -> Manifest:
    """A manifest from its JSON (untrusted: call :meth:`Manifest.verify` before using it)."""
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ManifestError(f"not a version {VERSION} release manifest")
    if set(data) != {"v", "release", "kid", "sig"}:
        raise ManifestError("manifest: expected the fields v, release, kid, sig (is it signed?)")
    kid, sig = data["kid"], data["sig"]
    if not isinstance(kid, str) or not re.fullmatch(r"[0-9a-f]{16}", kid):
        raise ManifestError("manifest.kid: expected a key id")
    try:
        signature = b64decode(sig if isinstance(sig, str) else "", SIGNATURE_BYTES)
    except SignatureError as exc:
        raise ManifestError(f"manifest.sig: {exc}") from None
    return Manifest(parse_release(data["release"]), kid, signature)


def _file(entry: Any) -> ReleaseFile:
    if not isinstance(entry, dict) or set(entry) != {"name", "size", "sha256", "machine"}:
        raise ManifestError("release.files: each file has name, size, sha256, machine")
    name, size, digest, machine = entry["name"], entry["size"], entry["sha256"], entry["machine"]
    if not isinstance(name, str) or not _FILE.fullmatch(name) or name.startswith("."):
        raise ManifestError(f"release.files: {str(name)[:60]!r} is not a wheel's file name")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_FILE_BYTES:
        raise ManifestError(f"release.files: {name}: bad size")
    if not isinstance(digest, str) or not _HEX.fullmatch(digest):
        raise ManifestError(f"release.files: {name}: sha256 is not 64 hex digits")
    if machine not in MACHINES:
        raise ManifestError(f"release.files: {name}: machine {str(machine)[:20]!r}")
    return ReleaseFile(name, size, digest, machine)
