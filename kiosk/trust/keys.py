"""Private keys on disk: the one way every key file is written (card issuer, staff signing
keys, certificates' keys).

A private key is created afresh, readable by its owner only (mode 0600, less any
umask), and never written over an existing file unless the caller says so. Creating
it with ``O_EXCL`` means the key never goes through a file that someone else made
first (with looser rights, or a symlink somewhere else); replacing removes the old file
and creates a new one the same way.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private_key(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` as a new private key file at ``path``; FileExistsError when there is one
    already, unless ``replace``."""
    if replace:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
