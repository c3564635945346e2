"""Work begun ahead of its step, in a thread, and taken over by the step. No Prefect here.

``destatic run`` begins a file's first steps while Prefect loads and the
flow run is created (:func:`destatic.steps.warming.start_ahead`). Each piece
of work is registered by its work folder and step, and gives back the
artifact it wrote with its record. The step asks :func:`taken` for its own
target: it gets that record (waiting for the work if it is still running),
or None when nothing was begun, the work failed or wrote another target. Then
the step runs as usual, and a failure is its own, told as the step tells it.

Work still running when the process exits is waited for, so that no
half-written artifact is left behind; work that has not started its heavy
part by then may skip it (:func:`closing`).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

__all__ = ["Made", "begin", "closing", "pending", "taken"]

Made = tuple[Path, Any]
"""What a piece of work gives back: the artifact it wrote and the step's record of it; or None for nothing done."""

_begun: dict[tuple[Path, str], Future[Made | None]] = {}
_lock = threading.Lock()
_exiting = threading.Event()
_registered = False


def begin(step: str, work_dir: Path, work: Callable[[], Made | None]) -> Future[Made | None] | None:
    """Run ``work()`` in a thread as `step`'s work for the file of `work_dir`; its future, or None if that is begun already.

    The exit handler that waits for the work is registered on the first call,
    so that it runs before those of the modules the work uses (the step
    children's, :mod:`destatic.steps.isolated`, registered at their import).
    """
    global _registered
    key = (Path(work_dir), step)
    with _lock:
        if key in _begun:
            return None
        future: Future[Made | None] = Future()
        _begun[key] = future
        if not _registered:
            atexit.register(_wait_for_work)
            _registered = True

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # the step runs again and says what went wrong
            future.set_exception(error)

    threading.Thread(target=run, name=f"destatic-{step}-ahead", daemon=True).start()
    return future


def taken(step: str, target: Path) -> Any:
    """The record of `step`'s work begun ahead for `target` (waited for), or None: the step must run.

    The work is looked up by `target`'s folder and forgotten once it is given
    to its step (or has failed): a later run of the step runs it. Work for
    another target of the same folder and step (the noise file's extraction
    beside the input's) is left for its own step.
    """
    target = Path(target)
    key = (target.parent, step)
    with _lock:
        future = _begun.get(key)
    if future is None:
        return None
    failed = future.exception() is not None
    made = None if failed else future.result()
    mine = made is not None and Path(made[0]) == target
    if failed or made is None or mine:
        with _lock:
            if _begun.get(key) is future:
                del _begun[key]
    return made[1] if mine and target.is_file() else None


def pending(step: str, work_dir: Path) -> bool:
    """Whether `step`'s work for the file of `work_dir` was begun and not yet given to its step."""
    with _lock:
        return (Path(work_dir), step) in _begun


def closing() -> bool:
    """Whether the process is exiting: work not yet started on its heavy part should give up (return None)."""
    return _exiting.is_set()


def _wait_for_work() -> None:
    """At exit: wait for the work no step took over (a step that took some waited for it)."""
    _exiting.set()
    with _lock:
        pending = list(_begun.values())
    for future in pending:
        future.exception()
