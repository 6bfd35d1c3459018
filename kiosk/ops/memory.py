"""How the daemon's memory is kept small on a Pi: few malloc arenas for many quiet threads.

glibc gives a thread that allocates while another holds the main arena an arena
of its own, up to eight per core. The kiosk runs about ten threads (camera,
readers, display, paho, the controller) that each allocate a little now and
then; an arena each keeps its freed chunks resident, about 0.4 MiB in all on
the development machine (``tools/bench/startup.py``). Two arenas serve them
without contention worth measuring: only the controller thread allocates much.
Checked against glibc ``malloc/malloc.h`` (``M_ARENA_MAX`` is -8) and
``malloc/arena.c`` (``arena_get2`` stops creating arenas at ``arena_max``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before starting threads); False where libc is not
    glibc or refuses, and nothing changes."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
