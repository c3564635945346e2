"""Checks on processes that tests start and expect to be gone (Linux ``/proc``)."""

from __future__ import annotations

import time


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped by init, is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def all_gone(pids: list[int], *, within_s: float = 5.0) -> bool:
    """Whether every process of `pids` is gone within `within_s` (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + within_s
    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def child_pids() -> set[int]:
    """PIDs of this process's live descendants (compare before and after: other tests may leave a server running)."""
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True) if running(child.pid)}
