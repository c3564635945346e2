"""The ``destatic`` command: run, watch, deploy, profile, artifacts, cache, server.

Every command builds :class:`~destatic.settings.Settings` from its flags (the
strongest source) and calls a flow, a step or the cache. Exit status: 0
success, 1 a file failed, 2 bad usage or a bad setting. One module per group
of commands; :mod:`.common` holds what they share.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import Any

import typer
from typer._click.exceptions import ClickException  # typer carries its own click

from destatic.cli import files, server, watch
from destatic.cli.common import app, usage_error
from destatic.cli.run import run

__all__ = ["app", "files", "main", "run", "server", "watch"]


def main() -> None:
    """Entry point of ``destatic``: run the command, then end the process without tearing Python down.

    A usage error is one line in destatic's style (:func:`~destatic.cli.common.usage_error`).

    Once a command has finished, the exit handlers run (Prefect drains its
    event and log queues, an embedded server stops, temporary files go), the
    standard streams are flushed, and the process ends with the command's
    status. What is skipped is the interpreter's teardown of every loaded
    module, which costs about 0.4 s with Prefect and matplotlib loaded and
    changes no file. An exception other than an exit is left to Python.

    SIGTERM stops a command as Ctrl-C does, so that the same clean-up runs
    (an embedded server is stopped with it, not left without a parent), and
    the status is 143.
    """
    terminated: list[int] = []

    def stop_as_interrupted(number: int, frame: Any) -> None:
        terminated.append(number)
        signal.default_int_handler(number, frame)

    signal.signal(signal.SIGTERM, stop_as_interrupted)
    try:
        status: Any = app(prog_name="destatic", standalone_mode=False)
    except ClickException as error:
        status = usage_error(error)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        status = 1
    except SystemExit as stop:
        status = stop.code
    if terminated:
        status = 128 + signal.SIGTERM
    elif status is None:
        status = 0
    elif not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    # What Python does at exit, in its order, without the module teardown after
    # it. No public API runs either step on its own: threading._shutdown runs
    # the threading exit hooks (concurrent.futures joins its idle workers there)
    # and joins the threads that are not daemons; then the atexit handlers.
    # tests/pipeline/test_cli.py::test_main_runs_exit_handlers_and_keeps_the_status pins both.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)

