"""Functions for tests/steps/test_isolated.py to run in a child process (found there by module name)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from destatic import media
from destatic.errors import BadInputError


def loaded_modules() -> tuple[int, bool, bool]:
    """This process's id, and whether Prefect and matplotlib are loaded in it."""
    return os.getpid(), "prefect" in sys.modules, "matplotlib" in sys.modules


def holds(module: str) -> bool:
    """Whether `module` is loaded in this process."""
    return module in sys.modules


def refuse(path: Path) -> None:
    raise BadInputError(path, "it is not what it says")


def count(total: int, *, on_progress: Callable[[int, int], None]) -> int:
    for done in range(1, total + 1):
        on_progress(done, total)
    return total


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def time_limit() -> float | None:
    return media.fixed_time_limit()


def unpicklable() -> object:
    return lambda: None


def current_folder() -> str:
    return os.getcwd()


def modules_a_first_clean_adds(method: str) -> list[str]:
    """The modules that cleaning stereo audio with `method`, hum search included, imports in this process."""
    import numpy as np

    from destatic import dsp

    before = set(sys.modules)
    audio = np.random.default_rng(1).standard_normal((3 * 48000, 2)).astype(np.float32) * 0.01
    dsp.denoise(audio, 48000, method=method, noise=(0.0, 1.0))
    dsp.find_hum(lambda start, stop: audio[start:stop], len(audio), 48000)
    return sorted(set(sys.modules) - before)


def loaded(*names: str) -> list[bool]:
    return [name in sys.modules for name in names]


def pid_after(seconds: float) -> int:
    """This process's id, after `seconds` (a slow warm-up)."""
    import time

    time.sleep(seconds)
    return os.getpid()


def allocator_settings() -> dict[str, str]:
    """glibc allocator variables this process was started with."""
    return {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")}
