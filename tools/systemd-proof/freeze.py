"""Hang one thread of a process, as a controller stuck in a call would be, until the
process is ended: PTRACE_SEIZE then PTRACE_INTERRUPT stop that thread alone (a SIGSTOP
would stop every thread; ptrace(2), "Group-stop"), so paho's network thread goes on.
A signal meant for the stopped thread (systemd's watchdog SIGABRT) is let through, as
it would reach a thread stuck in a call. Exits 0 once the thread has ended, 1 on a
timeout (the thread is then let go)."""

import ctypes
import os
import sys
import time

PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000  # __WALL: wait for a thread that is not our child

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(request: int, tid: int, data: int = 0) -> None:
    if libc.ptrace(request, tid, None, ctypes.c_void_p(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"ptrace({request:#x}, {tid}): {os.strerror(errno)}")


def main(tid: int, timeout_s: float) -> int:
    ptrace(PTRACE_SEIZE, tid)
    ptrace(PTRACE_INTERRUPT, tid)
    print(f"  thread {tid} stopped", flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waited, status = os.waitpid(tid, os.WNOHANG | WALL)
        if waited == 0:
            time.sleep(0.2)
        elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return 0
        elif os.WIFSTOPPED(status) and status >> 16 == 0:  # a signal for this thread
            print(f"  thread {tid} gets signal {os.WSTOPSIG(status)}", flush=True)
            ptrace(PTRACE_CONT, tid, os.WSTOPSIG(status))
    ptrace(PTRACE_DETACH, tid)
    return 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), float(sys.argv[2])))
