"""Filter a stream's channels in several processes at once, with the same result.

Each channel is denoised on its own (its own noise estimate, its own gains),
so channels can be split between processes without changing a sample. Each
group of channels goes to a forked child process (cheap, and it imports
nothing; the child touches only numpy, its pipe and its own copy of the
arguments, never a lock another thread of the parent might hold).

One engine, :func:`run_channel_groups`, runs every parallel path: a child
either reads its own input (a file, or its copy-on-write view of an array in
memory), so only what it yields crosses a pipe, or is fed its channels of a
stream the calling process reads. Either way results come back in order, a
bounded number ahead, so memory stays bounded and the children and the
caller overlap. :func:`shared_output` gives in-memory results a place the
children write into directly.
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

__all__ = ["available_cpus", "resolve_jobs", "run_channel_groups", "shared_output", "split_stream"]

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
        *,
        fed: bool,
        ahead: int,
    ):
        self.connection, child_end = context.Pipe()
        _parent_ends.add(self.connection)
        self.process = context.Process(
            target=_serve, args=(child_end, run, fed), daemon=True, name="destatic-channels"
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


def _serve(connection: Connection, run: Callable[..., Iterable[Any]], fed: bool) -> None:
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
        for result in run(incoming()) if fed else run():
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


def run_channel_groups(
    work: Callable[..., Iterable[Any]],
    channels: int,
    *,
    n_jobs: int | None,
    feed: Iterable[Item] | None = None,
) -> Iterator[list[Any]]:
    """Run ``work`` on each group of channels, each in its own child process; yield what they yield.

    The one engine behind every parallel path of the DSP core. Either each
    child makes its own input (``feed`` None: ``work(group)`` reads its
    channels from a file, say, and only what it yields crosses a pipe), or
    this process reads ``feed`` and sends each child its channels of every
    item (``work(group, items)``). Either way each child runs at most
    :data:`BLOCKS_AHEAD` items or results ahead of the caller, so memory
    stays bounded while the children and the caller overlap.

    Parameters
    ----------
    work : callable
        ``work(group)``, or ``work(group, items)`` with ``feed``, for a slice
        ``group`` of the channels: an iterable that treats channels
        independently. Every group must yield equally many results.
    channels : int
        How many channels there are.
    n_jobs : int or None
        See :func:`resolve_jobs`; 1 runs ``work`` here on all channels.
    feed : iterable of np.ndarray [shape=(n, channels)] or of pairs, or None
        Items to split by channel: blocks, or ``(block, extra)`` pairs whose
        ``extra`` has the channels on its first axis (the gains of the block).

    Yields
    ------
    list
        The next result of every group, in channel order.
    """
    jobs = resolve_jobs(n_jobs, channels)
    if jobs == 1:
        whole = slice(0, channels)
        for result in work(whole) if feed is None else work(whole, iter(feed)):
            yield [result]
        return
    groups = _groups(channels, jobs)
    children: list[_Child] = []
    try:
        context = multiprocessing.get_context("fork")
        for group in groups:
            children.append(_Child(context, functools.partial(work, group), fed=feed is not None, ahead=BLOCKS_AHEAD))
        for child in children:
            child.start_threads()
        yield from _drive(children, groups, None if feed is None else iter(feed))
    finally:
        for child in children:
            child.close()


def split_stream(
    items: Iterable[Item],
    work_for: Callable[[int], Callable[[slice, Iterator[Item]], Iterable[np.ndarray]]],
    *,
    n_jobs: int | None,
    axis: int,
    together: Callable[[int], bool] = lambda channels: False,
) -> Iterator[np.ndarray]:
    """:func:`run_channel_groups` fed with a stream whose channel count its first item tells; the groups' results joined.

    Parameters
    ----------
    items : iterable of np.ndarray [shape=(n, channels)] or of pairs
        As ``feed`` of :func:`run_channel_groups`.
    work_for : callable
        ``work_for(channels)`` gives the ``work(group, items)`` for a stream of
        that many channels (checking what it needs, e.g. a noise profile's
        rows, before any child starts).
    n_jobs : int or None
        See :func:`resolve_jobs`.
    axis : int
        The channel axis of what ``work`` yields (0 for gains, 1 for samples).
    together : callable
        ``together(channels)``: whether the channels must stay in one group
        (their filter looks at them all), whatever ``n_jobs`` says.
    """
    stream = iter(items)
    first = next(stream, None)
    if first is None:
        return
    channels = (first[0] if isinstance(first, tuple) else first).shape[1]
    work = work_for(channels)
    jobs = 1 if together(channels) else n_jobs
    for parts in run_channel_groups(work, channels, n_jobs=jobs, feed=itertools.chain([first], stream)):
        yield parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)


def _drive(children: list[_Child], groups: list[slice], stream: Iterator[Item] | None) -> Iterator[list[Any]]:
    """Feed the children (if fed) and collect their results in step; a child's error is raised here.

    Fed children cannot run ahead of what they were sent, so all their
    replies are taken as they come; unfed ones are held back by their
    bounded reply queues, so only those owing a result are listened to.
    """
    sent, ended = 0, stream is None
    while True:
        for child in children:
            while (stream is not None or not child.results) and child.take_reply(wait=False):
                pass
        if all(child.results for child in children):
            yield [child.results.popleft() for child in children]
            continue
        if not ended and sent < min(child.requested for child in children) + BLOCKS_AHEAD:
            item = next(stream, None)
            for child, group in zip(children, groups):
                child.send(None if item is None else _part(item, group))
            ended, sent = item is None, sent + 1
            continue
        if stream is None:
            waiting = [child for child in children if not child.results and not child.done]
        else:  # the child furthest behind has input, or has been told the stream ended: it will reply
            waiting = sorted((child for child in children if not child.done), key=lambda child: child.requested)
        if not waiting:
            break
        waiting[0].take_reply()
    if any(child.results for child in children):
        raise RuntimeError("channel processes gave different numbers of results")


def shared_output(shape: tuple[int, int], n_jobs: int | None) -> np.ndarray:
    """A float32 array of ``shape`` (frames, channels) that forked children of :func:`run_channel_groups` can write into.

    For results of audio already in memory: each child writes its channels'
    columns straight into memory shared with this process (nothing passes
    through pipes). Plain memory when the work stays in this process.
    """
    frames, channels = shape
    if resolve_jobs(n_jobs, channels) == 1 or frames == 0:
        return np.empty(shape, np.float32)
    shared = mmap.mmap(-1, frames * channels * np.dtype(np.float32).itemsize)
    return np.frombuffer(shared, np.float32).reshape(shape)


