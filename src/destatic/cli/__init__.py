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
import subprocess
import sys
import threading
import time
from typing import Any

import typer
from typer._click.exceptions import ClickException  # typer carries its own click

from destatic.cli import files, server, watch
from destatic.cli.common import app, usage_error
from destatic.cli.run import run

__all__ = ["app", "files", "main", "run", "server", "watch"]


TERM_GRACE_S = 5.0
"""After SIGTERM, how long the command has to unwind before it is interrupted again (an interrupt can be lost)."""
TERM_DEADLINE_S = 30.0
"""After SIGTERM, how long until the process ends whatever it is doing, Prefect's temporary server stopped first."""
TERM_RETRY_S = 0.05
"""After SIGTERM, how soon an interrupt put off while the main thread was inside Python's import machinery is raised."""


class _Termination:
    """SIGTERM stops a command as Ctrl-C does, and for sure within :data:`TERM_DEADLINE_S`.

    The first SIGTERM raises KeyboardInterrupt in the main thread, so that
    the command's clean-up runs. An interrupt can be lost (raised inside a
    finalizer, or caught by library code, and the command goes on), so a
    thread raises it again every :data:`TERM_GRACE_S` until the command has
    returned. Should the exit handlers still be running at the deadline,
    the temporary server is stopped and the process ends with status 143.

    Not inside Python's import machinery: raised between its taking the
    import lock and the ``try`` that gives it back, the interrupt would
    leave the lock held by the main thread, and the first import of any
    other thread (Prefect's event loop, draining its events at exit)
    would wait for it until the deadline. There it is put off for
    :data:`TERM_RETRY_S`. Ctrl-C (SIGINT) is put off there the same way
    (:meth:`ctrl_c`): it has no deadline, so such a lock would hang the
    process at exit.
    """

    def __init__(self) -> None:
        self.received = False
        self.put_off = False
        self.returned = threading.Event()
        # The handler takes no lock (it may run while the main thread holds one): it wakes the thread through a pipe.
        self._woken, self._wake = os.pipe()
        self._ctrl_c_woken, self._ctrl_c_wake = os.pipe()
        threading.Thread(target=self._see_it_through, name="destatic-sigterm", daemon=True).start()
        threading.Thread(target=self._raise_put_off_ctrl_c, name="destatic-sigint", daemon=True).start()

    def interrupt(self, number: int, frame: Any) -> None:
        """The SIGTERM handler."""
        if not self.received:
            self.received = True
            os.write(self._wake, b"!")
        if self.returned.is_set():  # once the command has returned, the exit handlers run undisturbed
            return
        if _inside_import(frame):
            self.put_off = True  # the thread raises it again in a moment
            return
        signal.default_int_handler(number, frame)

    def ctrl_c(self, number: int, frame: Any) -> None:
        """The SIGINT handler: KeyboardInterrupt, as Python's own, but put off for a moment inside the import machinery."""
        if _inside_import(frame):
            os.write(self._ctrl_c_wake, b"!")
            return
        signal.default_int_handler(number, frame)

    def _raise_put_off_ctrl_c(self) -> None:
        while os.read(self._ctrl_c_woken, 1):
            time.sleep(TERM_RETRY_S)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def _see_it_through(self) -> None:
        os.read(self._woken, 1)
        deadline = time.monotonic() + TERM_DEADLINE_S
        again = time.monotonic() + TERM_GRACE_S
        while not self.returned.wait(min(TERM_RETRY_S, max(0.0, deadline - time.monotonic()))):
            now = time.monotonic()
            if now >= deadline:
                break
            if self.put_off or now >= again:
                self.put_off, again = False, now + TERM_GRACE_S
                signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # a real signal: it ends a blocking call
        time.sleep(max(0.0, deadline - time.monotonic()))
        flushing = threading.Thread(target=sys.stdout.flush, daemon=True)  # not here: a blocked main thread may hold its lock
        flushing.start()
        flushing.join(1.0)
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), f"destatic: still running {TERM_DEADLINE_S:g} s after SIGTERM: ending now\n".encode())
        _stop_temporary_server()
        os._exit(128 + signal.SIGTERM)


def _inside_import(frame: Any) -> bool:
    """Whether a signal arrived while the main thread ran Python's import machinery (it may hold the import lock)."""
    return frame is not None and frame.f_code.co_filename.startswith("<frozen importlib")


def _stop_temporary_server() -> None:
    """Stop Prefect's temporary server if this process started one, as its exit handler would, without logging or importing."""
    prefect_server = sys.modules.get("prefect.server.api.server")
    process = None if prefect_server is None else prefect_server.SubprocessASGIServer().server_process
    if process is None:
        return
    with contextlib.suppress(Exception):
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _prefect_termination(error: BaseException) -> bool:
    """Whether `error` is Prefect's own form of SIGTERM (raised in place of ours while a flow runs)."""
    exceptions = sys.modules.get("prefect.exceptions")
    return exceptions is not None and isinstance(error, exceptions.TerminationSignal)


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
    the status is 143, at any moment and within :data:`TERM_DEADLINE_S`
    (see :class:`_Termination`). Inside Python's import machinery both
    SIGTERM and Ctrl-C are put off for :data:`TERM_RETRY_S`.
    """
    termination = _Termination()
    signal.signal(signal.SIGTERM, termination.interrupt)
    signal.signal(signal.SIGINT, termination.ctrl_c)
    try:
        status: Any = app(prog_name="destatic", standalone_mode=False)
    except ClickException as error:
        status = usage_error(error)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        status = 1
    except SystemExit as stop:
        status = stop.code
    except BaseException as error:
        if not (termination.received or _prefect_termination(error)):
            raise
        status = 128 + signal.SIGTERM
    termination.returned.set()
    if termination.received:
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

