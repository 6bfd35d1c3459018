"""The check-in record and its time-ordered id."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): sorts by creation time, unique without coordination.

    The backend deduplicates on it, and it orders check-ins from many kiosks.
    """
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
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
