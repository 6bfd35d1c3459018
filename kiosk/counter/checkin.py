"""The check-in record and its time-ordered id."""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass


class _Entropy:
    """Random bytes from the kernel, fetched 4 KiB at a time.

    ``os.urandom`` is a system call that gives up the GIL; one per check-in made the
    controller wait for the MQTT threads on every scan of a rush. Drawing from a pool
    keeps the same source (the kernel's CSPRNG) with one call per 409 ids. A forked
    child starts with an empty pool, so two processes never share random bits.
    """

    POOL = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._at = b"", 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._at + size > len(self._pool):
                self._pool, self._at = os.urandom(self.POOL), 0
            self._at += size
            return self._pool[self._at - size:self._at]


_entropy = _Entropy()


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): sorts by creation time, unique without coordination.

    The backend deduplicates on it, and it orders check-ins from many kiosks.
    """
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = int.from_bytes(_entropy.take(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class CheckIn:
    """One customer visit, exactly as scanned. Immutable: it is what gets stored and sent."""

    event_id: str
    device_id: str
    boot_id: str
    seq: int
    captured_at: float
    member_id: str
    source: str
