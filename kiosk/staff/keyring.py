"""Staff signing keys on disk, and the sequence number each has reached.

One folder (``keys.dir`` of the staff config, ``~/.config/kioskctl/keys``):
``NAME.key`` is a private key (mode 600), ``NAME.pub`` its public key or a
colleague's, ``NAME.seq`` the last sequence number ``NAME`` signed (so a restart
of ``kioskctl`` never issues a number a kiosk has already seen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from drivers.files import write_atomically
from kiosk import KioskError
from kiosk.staff.issuer import Issuer
from kiosk.trust.keys import write_private_key
from kiosk.trust.signing import (
    SignatureError,
    Signer,
    key_id,
    public_key_from_text,
    public_key_text,
)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def make_key(path: Path) -> str:
    """A new private key at ``path`` (mode 600, its folder 700; ``FileExistsError`` rather
    than overwrite one) and its public key beside it (``.pub``); returns the public key.
    Staff's signing keys and the release key are made alike."""
    signer = Signer.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_key(path, f"{signer.text()}\n".encode())
    public = public_key_text(signer.public)
    path.with_suffix(".pub").write_text(public + "\n")
    return public


class KeyringError(KioskError):
    """A key is missing, unreadable or ambiguous; the text says which."""


@dataclass(frozen=True)
class KeyInfo:
    """One key in the folder."""

    name: str
    key_id: str
    public: str
    private: bool


class Keyring:
    """The keys in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.expanduser()

    def generate(self, name: str) -> KeyInfo:
        """A new private key ``name`` (refuses to overwrite one)."""
        self._check_name(name)
        path = self.folder / f"{name}.key"
        try:
            make_key(path)
        except FileExistsError:
            raise KeyringError(f"{path} exists already") from None
        return self._info(name)

    def add(self, name: str, public: str) -> KeyInfo:
        """Record a colleague's public key as ``name``."""
        self._check_name(name)
        try:
            public_key_from_text(public)
        except (SignatureError, ValueError):
            raise KeyringError(f"not a public key: {public[:60]!r}") from None
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.folder / f"{name}.pub").write_text(public.strip() + "\n")
        return self._info(name)

    def list(self) -> list[KeyInfo]:
        """Every key in the folder, by name."""
        if not self.folder.is_dir():
            return []
        return [self._info(path.stem) for path in sorted(self.folder.glob("*.pub"))]

    def issuer(self, name: str = "") -> tuple[Issuer, str]:
        """An issuer signing with key ``name`` (empty: the only private key), and its name."""
        if not name:
            names = [path.stem for path in sorted(self.folder.glob("*.key"))]
            if len(names) != 1:
                raise KeyringError(f"{len(names)} private keys in {self.folder}: "
                                   "name one with --key (or kioskctl keys gen NAME)")
            name = names[0]
        try:
            signer = Signer.from_text((self.folder / f"{name}.key").read_text())
        except OSError as exc:
            raise KeyringError(f"cannot read private key {name!r}: {exc.strerror}") from None
        except (SignatureError, ValueError):
            raise KeyringError(f"{self.folder / name}.key is not a private key") from None
        seq = self.folder / f"{name}.seq"
        last = int(seq.read_text()) if seq.exists() else 0
        return Issuer(signer, last_seq=last), name

    def save_seq(self, name: str, issuer: Issuer) -> None:
        """Remember how far ``name`` has counted (call after sending)."""
        # Durably: a count that fell back after a power cut would make the kiosks refuse
        # this key's next orders as replays.
        seq = str(issuer.last_seq).encode()
        write_atomically(self.folder / f"{name}.seq", lambda file: file.write(seq))

    def _info(self, name: str) -> KeyInfo:
        text = (self.folder / f"{name}.pub").read_text().strip()
        try:
            kid = key_id(public_key_from_text(text))
        except (SignatureError, ValueError):
            raise KeyringError(f"{self.folder / name}.pub is not a public key") from None
        return KeyInfo(name, kid, text, (self.folder / f"{name}.key").exists())

    @staticmethod
    def _check_name(name: str) -> None:
        if not NAME.match(name):
            raise KeyringError(f"key name {name!r}: letters, digits, '_', '-' or '.'")
