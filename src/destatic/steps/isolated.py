"""Steps run in a child process that holds no Prefect, so that no process holds both.

The flow's process holds Prefect's client and the flow (about 110 MB). The
DSP steps add numpy's buffers, the compiled loops (numba and LLVM, about
80 MB), the learned model, and the report adds matplotlib and librosa. In one
process that made 450-500 MB; split, each process stays near half.
:func:`call` runs a step's ``run`` in a child and returns its record; errors
come back as the same exception (with the child's traceback as a note), and
progress calls are relayed to the caller's callback.

Children are started with a fresh interpreter (never forked from a process
with threads), reused while they are warm (their compiled loops stay
loaded), closed after :data:`IDLE_S` without work (:data:`WARM_IDLE_S` for one
started ahead that has not worked yet), and at most one per CPU
works at a time. Children are of kinds (the report's, with matplotlib and
librosa loaded, is not the DSP steps'), so that none holds every library.
A child exits when its parent does.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from destatic import media
from destatic._cpus import available_cpus
from destatic.errors import DestaticError

__all__ = ["COLLECTING_KINDS", "IDLE_S", "WARM_IDLE_S", "call", "close_children", "memory_environment", "serve", "warm", "warmed"]

T = TypeVar("T")

IDLE_S = 30.0
"""Seconds a child waits for its next step before it is closed."""
WARM_IDLE_S = 600.0
"""Seconds a child started ahead (:func:`warm`) waits for its first step: the steps before it may take minutes."""
MEMORY_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "2097152", "MALLOC_TRIM_THRESHOLD_": "2097152"}
"""glibc's allocator in a child: buffers over 2 MiB are given back to the system when freed, and threads share two arenas.

Not lower: at 256 KiB the blocks the DSP loops allocate for every few
seconds of audio were mapped afresh each time, and their page faults made
subtract and inverse twice as slow (10-minute stereo: 2.1 and 2.8 s against
1.0 and 1.3 s), for 17 MiB less at the peak."""
DSP_MMAP_THRESHOLD = 4 << 20
"""The DSP child's threshold instead (``steps``): DFN3's onnxruntime tensors of a chunk (2.3-3 MiB each, its arena
being off) were mapped afresh for every chunk at 2 MiB, and their page faults made the subtract step about a fifth
slower (3 minutes of stereo: 4.7 s against 3.9 s; a 10-minute run's subtract step 16-17 s against 13.1-13.5 s),
for about 13 MiB more at the peak."""
DSP_ARENAS = 1
"""The DSP child's threads (the classic rule's, DFN3's, the profile begun ahead) share one arena: each thread's peak
was kept apart in two (the subtract and inverse steps of 30 minutes of stereo in one process: 302-303 MiB against
307-310, in 39.5-42.2 s against 40.5-43.0)."""
COLLECTING_KINDS = ("report",)
"""Kinds of child that collect their cyclic garbage in full after answering each call, off the caller's path. The
report's figures (matplotlib) are reference cycles that outlive the young collections, and the full ones come
seldom in a process holding matplotlib, librosa and numba: a reused child grew by about 10 MiB per spectrogram
drawn (260 -> 309 MiB over six; flat at 259 with a full collection after each, which takes 0.04-0.13 s)."""
_SERVE = "from destatic.steps.isolated import serve; serve()"


def memory_environment(kind: str) -> dict[str, str]:
    """The allocator settings of a child of `kind` (:data:`MEMORY_ENVIRONMENT`; the DSP child's :data:`DSP_MMAP_THRESHOLD` and :data:`DSP_ARENAS`)."""
    if kind != "steps":
        return dict(MEMORY_ENVIRONMENT)
    threshold = str(DSP_MMAP_THRESHOLD)
    return {**MEMORY_ENVIRONMENT, "MALLOC_ARENA_MAX": str(DSP_ARENAS), "MALLOC_MMAP_THRESHOLD_": threshold, "MALLOC_TRIM_THRESHOLD_": threshold}


class _Child:
    """One child process and the pipes to it."""

    def __init__(self, kind: str) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**memory_environment(kind), **os.environ}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True
        )
        self.idle_since = time.monotonic()
        self.served = False
        self.generation = _generation

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Let the child exit (its input closes), or kill it if it is stuck."""
        self.let_go()
        try:
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()

    def let_go(self) -> None:
        """Close the child's input: it exits once it has read what was sent (:meth:`close` then waits)."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


_idle: dict[str, list[_Child]] = {}
_generation = 0
"""Bumped by :func:`close_children`: a child started before (one still warming then) is closed when it is done, never reused."""
_lock = threading.Lock()
_working = threading.BoundedSemaphore(available_cpus())
_reaper: threading.Thread | None = None
_warming: dict[str, threading.Thread] = {}


def _take(kind: str) -> _Child:
    with _lock:
        idle = _idle.setdefault(kind, [])
        while idle:
            child = idle.pop()
            if child.alive():
                return child
    return _Child(kind)


def _give_back(kind: str, child: _Child) -> None:
    global _reaper
    child.idle_since = time.monotonic()
    with _lock:
        outlived = child.generation != _generation
        if not outlived:
            _idle.setdefault(kind, []).append(child)
        if _reaper is None:
            _reaper = threading.Thread(target=_reap, name="destatic-children", daemon=True)
            _reaper.start()
    if outlived:
        child.close()


def _reap() -> None:
    while True:
        time.sleep(IDLE_S / 4)
        stale = []
        with _lock:
            for idle in _idle.values():
                stale += [child for child in idle if time.monotonic() - child.idle_since > (IDLE_S if child.served else WARM_IDLE_S)]
                idle[:] = [child for child in idle if child not in stale]
        for child in stale:
            child.close()


def warm(kind: str, prepare: Callable[..., Any], /, *args: Any) -> None:
    """Start a child of `kind` in the background and call ``prepare(*args)`` in it, unless one is idle or starting.

    For the flow to call as a file starts: the child's start-up, and what
    `prepare` loads (the modules and compiled loops its first step needs),
    then overlap the work before that step, which takes the child
    (:func:`call` waits for it).
    """
    with _lock:
        if _idle.get(kind) or kind in _warming:
            return
        starting = threading.Thread(target=_warm, args=(kind, prepare, args), name=f"destatic-warm-{kind}", daemon=True)
        _warming[kind] = starting
    starting.start()


def warmed(kind: str, *, unless: Callable[[], bool]) -> bool:
    """Wait until no child of `kind` is starting (:func:`warm`); False as soon as ``unless()`` is true instead.

    For work begun ahead, which should not start once the process exits
    (its first run on a machine compiles the loops for 10-20 s first).
    """
    with _lock:
        starting = _warming.get(kind)
    while starting is not None and starting.is_alive():
        if unless():
            return False
        starting.join(0.1)
    return not unless()


def _warm(kind: str, prepare: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        call(prepare, *args, child=kind, _from_warm=True)
    except Exception:  # the first step of this kind starts a child of its own, and says what went wrong
        pass
    finally:
        with _lock:
            _warming.pop(kind, None)


def close_children() -> None:
    """Close every idle child now, and each one still starting or working once it is done (at exit; a test that counts processes)."""
    global _generation
    with _lock:
        _generation += 1
        children = [child for idle in _idle.values() for child in idle]
        _idle.clear()
    for child in children:
        child.let_go()  # all at once, then each waited for
    for child in children:
        child.close()


atexit.register(close_children)


def call(function: Callable[..., T], /, *args: Any, child: str = "steps", _from_warm: bool = False, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a child process: its result, or its exception raised here.

    Parameters
    ----------
    function : callable
        A module-level function (found in the child by module and name); its
        arguments and result must pickle.
    *args, **kwargs
        Its arguments. A keyword ``on_progress`` callable stays here: the child
        calls a stand-in that relays each ``(done, total)`` to it. The caller's
        current folder and the ffmpeg time limit of its context
        (:func:`destatic.media.time_limit`) hold in the child.
    child : str
        The kind of child to run it in: one that has run only functions of this kind.

    Raises
    ------
    Exception
        What `function` raised, with the child's traceback as a note.
    DestaticError
        The child ended without an answer (killed, out of memory, crashed).
    """
    on_progress = kwargs.pop("on_progress", None)
    request = (function.__module__, function.__qualname__, args, kwargs, os.getcwd(), media.fixed_time_limit(), on_progress is not None)
    kind = child
    with _lock:
        starting = None if _from_warm else _warming.get(kind)
    if starting is not None:
        starting.join()  # a child of this kind is starting: take it when it is ready
    with _working:
        process = _take(kind)
        answered = False
        try:
            assert process.process.stdin is not None and process.process.stdout is not None
            pickle.dump(request, process.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.process.stdin.flush()
            while True:
                outcome, *payload = pickle.load(process.process.stdout)
                if outcome == "progress":
                    on_progress(*payload)
                    continue
                answered = True
                break
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as error:
            process.kill()
            code = process.process.returncode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise DestaticError(f"the process running {function.__qualname__} ended without an answer ({how})") from error
        finally:
            if answered:
                process.served = process.served or not _from_warm
                _give_back(kind, process)
            elif process.alive():
                process.kill()
    if outcome == "raised":
        error, told = payload
        if told:
            error.add_note(told)
        raise error
    return payload[0]  # type: ignore[no-any-return]


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(70)


def _answer(out: IO[bytes], message: tuple[Any, ...]) -> None:
    try:
        blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # a result that does not pickle is the step's fault, told as such
        blob = pickle.dumps(("raised", DestaticError(f"the step's answer cannot be sent back: {error}"), ""))
    out.write(blob)
    out.flush()


def _portable(error: BaseException) -> tuple[BaseException, str]:
    """`error` (or a DestaticError saying the same where it does not pickle), and the child's traceback of it."""
    told = "in the step's process:\n" + "".join(traceback.format_exception(error)).rstrip()
    try:
        pickle.loads(pickle.dumps(error))
        return error, told
    except Exception:
        return DestaticError(f"{type(error).__name__}: {error}"), told


def serve() -> None:
    """The child's loop: read a call, run it, answer; until the input closes or the parent is gone.

    The child's kind is its last argument (see :data:`COLLECTING_KINDS`).
    """
    import gc
    import importlib

    collects = sys.argv[-1] in COLLECTING_KINDS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which closes its children
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what a library prints goes to stderr, not into the answers
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            module, name, args, kwargs, folder, limit, relay = pickle.load(requests)
        except EOFError:  # closed by the parent: nothing is left to write but what a library printed
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # not the interpreter's shutdown, which took 0.8 s with numba and matplotlib loaded
        if relay:
            kwargs["on_progress"] = lambda done, total: _answer(answers, ("progress", done, total))
        try:
            os.chdir(folder)  # relative paths mean what they mean to the caller
            function = importlib.import_module(module)
            for part in name.split("."):
                function = getattr(function, part)
            with media.time_limit(limit):
                result = function(*args, **kwargs)
            message: tuple[Any, ...] = ("returned", result)
        except BaseException as error:  # every failure goes back to the caller, who decides
            message = ("raised", *_portable(error))
        try:
            _answer(answers, message)
        except BrokenPipeError:  # the parent closed its end (it is exiting): nobody is left to answer
            os._exit(0)
        if collects:
            gc.collect()
