"""Filter a stream's channels in several processes at once, with the same result.

Each channel is denoised on its own (its own noise estimate, its own gains),
so channels can be split between processes without changing a sample. Each
group of channels goes to a forked child process (cheap, and it imports
nothing; the child touches only numpy, its pipe and its own copy of the
arguments, never a lock another thread of the parent might hold).

:func:`map_channel_groups` feeds the children from one stream the calling
process reads and splits; :func:`run_channel_groups` lets each child read its
own input (a file, say), so only what it yields crosses a pipe. Either way
results come back in order, a bounded number ahead, so memory stays bounded
and the children and the caller overlap.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import mmap
import multiprocessing
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from destatic._cpus import available_cpus
from destatic.errors import ParameterError

__all__ = ["available_cpus", "fill_by_channel_groups", "map_channel_groups", "resolve_jobs", "run_channel_groups"]

Item = np.ndarray | tuple[np.ndarray, np.ndarray]
BLOCKS_AHEAD = 3
PARENT_CHECK_SECONDS = 1.0

_parent_ends: weakref.WeakSet[Connection] = weakref.WeakSet()
"""This process's ends of its children's pipes: a forked child closes its copies."""


def resolve_jobs(n_jobs: int | None, channels: int) -> int:
    """Child processes to filter ``channels`` channels with; 1 means in this process.

    ``None`` means one per channel up to the CPUs available. A daemonic
    process (e.g. a Dask worker) may not start children, and children are
    forked, so both that and a system without ``fork`` get 1.
    """
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1
    ):
        raise ParameterError(f"n_jobs={n_jobs!r} must be None (automatic) or an integer >= 1")
    if multiprocessing.current_process().daemon or not hasattr(os, "fork"):
        return 1
    wanted = available_cpus() if n_jobs is None else n_jobs
    return max(1, min(wanted, channels))


def _groups(channels: int, jobs: int) -> list[slice]:
    bounds = np.linspace(0, channels, jobs + 1).round().astype(int)
    return [slice(int(start), int(stop)) for start, stop in itertools.pairwise(bounds)]


def _part(item: Item, group: slice) -> Item:
    if isinstance(item, tuple):
        block, extra = item
        return np.ascontiguousarray(block[:, group]), np.ascontiguousarray(extra[group])
    return np.ascontiguousarray(item[:, group])


class _Child:
    """A child process running ``run`` on one group of channels, and threads talking to it.

    A fed child (``fed=True``) gets its input from this process, item by item,
    as it asks; an unfed one makes its own (``run`` takes no input) and may
    get ``ahead`` results ahead of the caller before its pipe holds it back.
    """

    def __init__(
        self,
        context: multiprocessing.context.BaseContext,
        run: Callable[..., Iterable[Any]],
        kwargs: dict[str, Any],
        *,
        fed: bool = True,
        ahead: int = 0,
    ):
        self.connection, child_end = context.Pipe()
        _parent_ends.add(self.connection)
        self.process = context.Process(
            target=_serve, args=(child_end, run, kwargs, fed), daemon=True, name="destatic-channels"
        )
        self.process.start()
        child_end.close()
        self.fed = fed
        self.replies: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=0 if fed else ahead)
        self.results: collections.deque[Any] = collections.deque()
        self.requested = 0
        self.done = False
        self._outbox: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=work, daemon=True, name="destatic-channels")
            for work in ((self._write, self._read) if fed else (self._read,))
        ]

    def start_threads(self) -> None:
        """Feed the child and collect its replies in threads (started after every child is forked).

        Sending from a thread keeps one busy child from holding up the others.
        """
        for thread in self._threads:
            thread.start()

    def _write(self) -> None:
        while True:
            item = self._outbox.get()
            try:
                self.connection.send(item)
            except (OSError, ValueError):  # the child stopped; its reply says why
                return
            if item is None:
                return

    def _read(self) -> None:
        while True:
            try:
                reply = self.connection.recv()
            except (EOFError, OSError):
                self.replies.put(("lost", None))
                return
            except Exception as error:  # a reply that cannot be unpickled
                self.replies.put(("error", RuntimeError(f"a channel process sent what cannot be read: {error}")))
                return
            self.replies.put(reply)
            if reply[0] in ("done", "error"):
                return

    def send(self, item: Item | None) -> None:
        """Queue an item (``None`` ends the stream) for the child."""
        self._outbox.put(item)

    def take_reply(self, *, wait: bool = True) -> bool:
        """Handle one reply; False when ``wait`` is off and none is there."""
        try:
            kind, payload = self.replies.get(block=wait)
        except queue.Empty:
            return False
        if kind == "result":
            self.results.append(payload)
        elif kind == "next":
            self.requested += 1
        elif kind == "done":
            self.done = True
        elif kind == "error":
            raise payload
        else:
            raise RuntimeError(f"a channel process died (exit code {self.process.exitcode})")
        return True

    def close(self) -> None:
        """End the stream, wait briefly for the child, kill it if it is still busy.

        An unfed child that has not finished is killed at once: nobody will
        take what it is making.
        """
        self._outbox.put(None)
        if not self.fed and not self.done:
            self.process.kill()
        _stop(self.process)
        deadline = time.monotonic() + 5
        for thread in self._threads:
            while thread.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    self.replies.get(timeout=0.05)  # a reader waiting for room gets it, then meets the pipe's end
        self.connection.close()


def _serve(
    connection: Connection, run: Callable[..., Iterable[Any]], kwargs: dict[str, Any], fed: bool
) -> None:
    """Child side: run the filter (on the items the parent sends, if fed); send back what it yields.

    A forked child first closes its copies of its siblings' pipes, so that
    each pipe ends when its own two processes do; it stops when its parent is
    gone (killed), rather than waiting for input forever.
    """
    for inherited in list(_parent_ends):
        inherited.close()
    parent = os.getppid()

    def incoming() -> Iterator[Item]:
        while True:
            connection.send(("next", None))
            while not connection.poll(PARENT_CHECK_SECONDS):
                if os.getppid() != parent:
                    raise SystemExit(1)
            item = connection.recv()
            if item is None:
                return
            yield item

    try:
        for result in run(incoming(), **kwargs) if fed else run(**kwargs):
            connection.send(("result", result))
        connection.send(("done", None))
    except SystemExit:
        return
    except BaseException as error:  # the parent raises it
        _report(connection, ("error", error), ("error", _plain(error)))
    finally:
        connection.close()


def _plain(error: BaseException) -> RuntimeError:
    """An error that pickles, for one that does not."""
    return RuntimeError(f"{type(error).__name__}: {error}")


def _report(connection: Connection, message: Any, fallback: Any) -> None:
    """Send `message` to the parent, or `fallback` if `message` cannot be pickled."""
    try:
        connection.send(message)
    except Exception:
        connection.send(fallback)


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    """Wait briefly for a child to end; kill it if it is still busy."""
    process.join(timeout=5)
    if process.is_alive():
        process.kill()
        process.join()


def map_channel_groups(
    run: Callable[..., Iterator[np.ndarray]],
    items: Iterable[Item],
    *,
    n_jobs: int | None,
    output_axis: int,
    per_group: Callable[[slice, int], dict[str, Any]],
) -> Iterator[np.ndarray]:
    """Run ``run`` on groups of channels in child processes and join what they yield.

    Parameters
    ----------
    run : callable
        A module-level generator function ``run(items, **kwargs)`` that
        treats channels independently.
    items : iterable of np.ndarray [shape=(n, channels)] or of pairs
        Checked audio blocks, or ``(block, extra)`` pairs whose ``extra``
        has the channels on its first axis (e.g. the gains for the block).
    n_jobs : int or None
        See :func:`resolve_jobs`; 1 runs ``run`` here on all channels.
    output_axis : int
        The channel axis of what ``run`` yields (1 for samples, 0 for gains).
    per_group : callable
        ``per_group(group, channels)`` gives the keyword arguments of ``run``
        for the slice ``group`` of ``channels`` (e.g. the noise profile's rows).

    Yields
    ------
    np.ndarray
        What ``run`` yields on all channels, in the same order.
    """
    stream = iter(items)
    first = next(stream, None)
    if first is None:
        return
    channels = (first[0] if isinstance(first, tuple) else first).shape[1]
    jobs = resolve_jobs(n_jobs, channels)
    stream = itertools.chain([first], stream)
    if jobs == 1:
        yield from run(stream, **per_group(slice(0, channels), channels))
        return
    groups = _groups(channels, jobs)
    children: list[_Child] = []
    try:
        context = multiprocessing.get_context("fork")
        for group in groups:
            children.append(_Child(context, run, per_group(group, channels)))
        for child in children:
            child.start_threads()
        sent = 0
        for item in stream:
            while sent >= min(child.requested for child in children) + BLOCKS_AHEAD:
                _wait_for_any(children)
                yield from _joined(children, output_axis)
            for child, group in zip(children, groups):
                child.send(_part(item, group))
            sent += 1
            for child in children:
                while child.take_reply(wait=False):
                    pass
            yield from _joined(children, output_axis)
        for child in children:
            child.send(None)
        while not all(child.done for child in children):
            _wait_for_any(children)
            yield from _joined(children, output_axis)
        if any(child.results for child in children):
            raise RuntimeError("channel processes gave different numbers of results")
    finally:
        for child in children:
            child.close()


def run_channel_groups(
    work: Callable[[slice], Iterable[Any]],
    channels: int,
    *,
    n_jobs: int | None,
) -> Iterator[list[Any]]:
    """Run ``work(group)`` for each group of channels, each in its own child process; yield what they yield.

    Unlike :func:`map_channel_groups`, nothing is sent to the children: each
    makes its own input (reads its channels from a file, say) and may write
    its own output, so only what ``work`` yields crosses a pipe, and each
    child runs at most :data:`BLOCKS_AHEAD` results ahead of the caller.

    Parameters
    ----------
    work : callable
        ``work(group)`` for a slice of the channels; an iterable that treats
        channels independently. Every group must yield equally many results.
    channels : int
        How many channels there are.
    n_jobs : int or None
        See :func:`resolve_jobs`; 1 runs ``work`` here on all channels.

    Yields
    ------
    list
        The next result of every group, in channel order.
    """
    jobs = resolve_jobs(n_jobs, channels)
    if jobs == 1:
        for result in work(slice(0, channels)):
            yield [result]
        return
    children: list[_Child] = []
    try:
        context = multiprocessing.get_context("fork")
        for group in _groups(channels, jobs):
            children.append(_Child(context, functools.partial(work, group), {}, fed=False, ahead=BLOCKS_AHEAD))
        for child in children:
            child.start_threads()
        while True:
            for child in children:
                while not child.results and not child.done:
                    child.take_reply()
            if not all(child.results for child in children):
                break
            yield [child.results.popleft() for child in children]
        if any(child.results for child in children):
            raise RuntimeError("channel processes gave different numbers of results")
    finally:
        for child in children:
            child.close()


def _wait_for_any(children: list[_Child]) -> None:
    """Block on the running child furthest behind (it has work, so it will reply)."""
    laggard = min((child for child in children if not child.done), key=lambda child: child.requested)
    laggard.take_reply()


def _joined(children: list[_Child], axis: int) -> Iterator[np.ndarray]:
    while all(child.results for child in children):
        yield np.concatenate([child.results.popleft() for child in children], axis=axis)


def fill_by_channel_groups(
    fill: Callable[[slice, np.ndarray], None],
    shape: tuple[int, int],
    *,
    n_jobs: int | None,
) -> np.ndarray:
    """Make a float32 array of ``shape`` (frames, channels) by ``fill(group, out)`` per group of channels.

    For audio already in memory: each forked child reads its channels from
    its copy-on-write view of the caller's arrays and writes ``out`` (the
    group's columns) straight into memory shared with this process, so
    nothing is sent through pipes. ``fill`` must treat channels independently.

    Parameters
    ----------
    fill : callable
        ``fill(group, out)`` writes the result for the channels ``group``
        into ``out``, a float32 view of shape ``(frames, group size)``.
    shape : tuple of int
        ``(frames, channels)`` of the result.
    n_jobs : int or None
        See :func:`resolve_jobs`.
    """
    frames, channels = shape
    jobs = resolve_jobs(n_jobs, channels)
    if jobs == 1 or frames == 0:
        result = np.empty(shape, np.float32)
        fill(slice(0, channels), result)
        return result
    shared = mmap.mmap(-1, frames * channels * np.dtype(np.float32).itemsize)
    result = np.frombuffer(shared, np.float32).reshape(shape)
    context = multiprocessing.get_context("fork")
    children = []
    try:
        for group in _groups(channels, jobs):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_fill_group, args=(sender, fill, group, result), daemon=True, name="destatic-channels"
            )
            process.start()
            sender.close()
            children.append((process, receiver))
        for process, receiver in children:
            try:
                outcome = receiver.recv()
            except EOFError:
                raise RuntimeError(f"a channel process died (exit code {process.exitcode})") from None
            if outcome is not None:
                raise outcome
    finally:
        for process, receiver in children:
            receiver.close()
            _stop(process)
    return result


def _fill_group(sender: Connection, fill: Callable[[slice, np.ndarray], None], group: slice, result: np.ndarray) -> None:
    try:
        fill(group, result[:, group])
        sender.send(None)
    except BaseException as error:  # the parent raises it
        _report(sender, error, _plain(error))
    finally:
        sender.close()
