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
