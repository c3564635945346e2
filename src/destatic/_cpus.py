"""Which CPUs this process may use: shared by the DSP core, the media layer and the runners."""

from __future__ import annotations

import contextlib
import os

__all__ = ["available_cpus", "bind_to_cpu", "one_cpu_each"]


def _allowed() -> list[int] | None:
    """The CPUs in this process's affinity mask, in order; None where there are no masks (not Linux)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    allowed = _allowed()
    return max(1, len(allowed) if allowed is not None else os.cpu_count() or 1)


def one_cpu_each(count: int) -> list[int] | None:
    """A CPU for each of `count` processes to be bound to, if that is exactly how many this process may use.

    For processes made of threads that hand work to one another (ffmpeg's
    demuxer, filters, encoder and muxer): bound to one core, the hand-overs
    stay there. With fewer processes than CPUs (or one CPU) the answer is
    None and nothing should be bound, so that two such groups started at once
    cannot crowd the same CPUs while others idle.
    """
    allowed = _allowed()
    return allowed if allowed is not None and len(allowed) == count > 1 else None


def bind_to_cpu(pid: int, cpu: int) -> None:
    """Bind process `pid` (and the threads it starts from now on) to `cpu`; nothing if it has ended or may not be bound."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {cpu})
