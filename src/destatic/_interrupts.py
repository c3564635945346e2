"""Ctrl-C (SIGINT) and SIGTERM held back while a child process is being started. No Prefect here.

A KeyboardInterrupt raised inside ``subprocess.Popen`` (or between it and
the code that records the child) would lose a started child that nobody
then stops: ffmpeg's AAC segments.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["interrupts_deferred"]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends: a KeyboardInterrupt raised inside
    ``subprocess.Popen`` would lose a started child that nobody then kills."""
    if threading.current_thread() is not threading.main_thread():
        yield  # KeyboardInterrupt is raised in the main thread only
        return
    caught: list[tuple[int, FrameType | None]] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda number, frame: caught.append((number, frame))) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number, frame in caught[:1]:
            handler = previous[number]
            if callable(handler):
                handler(number, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)
