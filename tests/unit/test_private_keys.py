"""Every private key file is written one way (``kiosk.trust.keys``): owner-only, created
afresh, never over an existing file unless the caller replaces it on purpose."""

from __future__ import annotations

import stat

import pytest

from kiosk.trust.keys import write_private_key


def test_a_key_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "issuer.key"
    write_private_key(path, b"secret\n")
    assert path.read_bytes() == b"secret\n"
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_an_existing_key_is_never_overwritten(tmp_path):
    path = tmp_path / "issuer.key"
    write_private_key(path, b"first\n")
    with pytest.raises(FileExistsError):
        write_private_key(path, b"second\n")
    assert path.read_bytes() == b"first\n"


def test_a_key_is_replaced_only_when_asked_and_never_through_the_old_file(tmp_path):
    path = tmp_path / "broker.key"
    path.write_bytes(b"old\n")
    path.chmod(0o644)  # an old file with looser rights: the new key must not inherit them
    write_private_key(path, b"new\n", replace=True)
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
