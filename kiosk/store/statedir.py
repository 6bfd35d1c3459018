"""One daemon per state directory: a lock held for the life of the process.

Two daemons on one directory would share the database and the MQTT client id
(each kicking the other off the broker). The second one refuses to start
with one line. The lock is ``flock`` on ``kiosk.lock``: the kernel releases it
when the process dies, even by ``kill -9``, so a stale lock never blocks a
restart.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from kiosk.store.db import StorageError
from kiosk.trust.keys import write_private_key

LOG_KEY_FILE = "log-key"

log = logging.getLogger(__name__)


class StateLock:
    """The held lock; :meth:`release` gives it up (also done by the process exiting)."""

    def __init__(self, state_dir: Path) -> None:
        path = state_dir / "kiosk.lock"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StorageError(f"cannot use state directory {state_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise StorageError(f"another kiosk is already running on state directory "
                               f"{state_dir} (pid {holder})") from None
        try:  # only a note for whoever finds the directory taken: a full disk must not stop us
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            log.warning("could not note the kiosk's pid in %s: %s", path, exc.strerror)

    def release(self) -> None:
        """Give the directory up."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def log_key(state_dir: Path, size: int = 32,
            on_unsaved: Callable[[str], None] = lambda _why: None) -> bytes:
    """The install's secret for member hashes in logs: made once (mode 0600) in the state
    directory, and the same at every start after; a file cut short by a power cut while it
    was made is made again (no hash was logged with it yet). When it cannot be written (a
    full disk: the kiosk must still start and deliver), this run uses a key of its own and
    ``on_unsaved`` says why: only its log's hashes differ from the other runs'."""
    path = state_dir / LOG_KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    if len(key) == size:
        return key
    key = secrets.token_bytes(size)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        write_private_key(path, key, replace=path.exists())
    except FileExistsError:  # another process made it a moment ago: use theirs
        return log_key(state_dir, size, on_unsaved)
    except OSError as exc:
        on_unsaved(f"cannot write {path}: {exc.strerror}")
    return key
