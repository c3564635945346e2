"""Filter a stream's channels in several threads at once, with the same result.

Each channel is denoised on its own (its own noise estimate, its own gains),
so channels can be split between threads without changing a sample. The
loops a group of channels spends its time in release the GIL (the compiled
frame loops of :mod:`destatic.dsp._kernels`, scipy's FFTs, file reads), so
the groups run at once on as many CPUs; nothing is forked, pickled or sent
through a pipe, and a thread holding a lock (soundfile's, logging's, an
import's) cannot leave a copy of it locked forever in a child, as a forked
process could.

One engine, :func:`run_channel_groups`, runs every parallel path: a group
either reads its own input (a file, or its columns of an array in memory),
or is fed its channels of a stream the calling thread reads. Either way
results come back in order, a bounded number ahead, so memory stays bounded
and the groups and the caller overlap.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from destatic._cpus import available_cpus
from destatic.errors import InternalError, ParameterError

__all__ = ["PARALLEL_MIN_SECONDS", "available_cpus", "jobs_for_length", "resolve_jobs", "run_channel_groups", "split_stream"]

Item = np.ndarray | tuple[np.ndarray, np.ndarray]
BLOCKS_AHEAD = 3
JOIN_SECONDS = 10.0
"""How long a stopped run waits for its threads to finish the chunk they are in."""
THREAD_NAME = "destatic-channels"

PARALLEL_MIN_SECONDS = 5.0
"""Shortest audio for which ``n_jobs=None`` filters channels in threads of their own."""


def jobs_for_length(n_samples: int, sample_rate: int, n_jobs: int | None = None) -> int | None:
    """``n_jobs`` for audio of known length: automatic (``None``) stays in the calling thread when it is short.

    Below :data:`PARALLEL_MIN_SECONDS` the threads would save little.
    """
    if n_jobs is None and n_samples < PARALLEL_MIN_SECONDS * sample_rate:
        return 1
    return n_jobs


def resolve_jobs(n_jobs: int | None, channels: int) -> int:
    """Threads to filter ``channels`` channels with; 1 means in the calling thread.

    ``None`` means one per channel up to the CPUs available.
    """
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1
    ):
        raise ParameterError(f"n_jobs={n_jobs!r} must be None (automatic) or an integer >= 1")
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


class _Stopped(Exception):
    """Raised in a group's thread, from its input, when the caller has stopped listening."""


class _Run:
    """What the threads of one run share: one condition variable, and whether the caller has stopped."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.stopped = False


class _Group:
    """One group of channels filtered in its own thread, and what passes between it and the caller.

    ``inbox``, ``results``, ``taken``, ``done`` and ``error`` are guarded by
    the run's condition variable.
    """

    def __init__(self, work: Callable[..., Iterable[Any]], group: slice, fed: bool, run: _Run):
        self.work = work
        self.group = group
        self.fed = fed
        self.run = run
        self.inbox: collections.deque[Item | None] = collections.deque()
        self.results: collections.deque[Any] = collections.deque()
        self.taken = 0
        self.done = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True, name=THREAD_NAME)

    def _incoming(self) -> Iterator[Item]:
        """The items the caller hands this group, until the end of the stream (``None``)."""
        condition = self.run.condition
        while True:
            with condition:
                while not self.inbox and not self.run.stopped:
                    condition.wait()
                if self.run.stopped:
                    raise _Stopped
                item = self.inbox.popleft()
                self.taken += 1
                condition.notify_all()
            if item is None:
                return
            yield item

    def _main(self) -> None:
        condition = self.run.condition
        try:
            results = iter(self.work(self.group, self._incoming()) if self.fed else self.work(self.group))
            try:
                for result in results:
                    with condition:
                        while len(self.results) >= BLOCKS_AHEAD and not self.run.stopped:
                            condition.wait()
                        if self.run.stopped:
                            return
                        self.results.append(result)
                        condition.notify_all()
            finally:
                close = getattr(results, "close", None)
                if close is not None:
                    close()  # a generator's own clean-up (its open files) runs here, in its thread
        except _Stopped:
            pass
        except BaseException as error:  # the caller raises it
            with condition:
                self.error = error
        finally:
            with condition:
                self.done = True
                condition.notify_all()


def run_channel_groups(
    work: Callable[..., Iterable[Any]],
    channels: int,
    *,
    n_jobs: int | None,
    feed: Iterable[Item] | None = None,
) -> Iterator[list[Any]]:
    """Run ``work`` on each group of channels, each in its own thread; yield what they yield.

    The one engine behind every parallel path of the DSP core. Either each
    group makes its own input (``feed`` None: ``work(group)`` reads its
    channels from a file, say), or the calling thread reads ``feed`` and hands
    each group its channels of every item (``work(group, items)``), at most
    :data:`BLOCKS_AHEAD` items ahead of the slowest group. Each group runs at
    most that many results ahead of the caller, so memory stays bounded while
    the groups and the caller overlap. An error in a group is raised here (the
    exception itself); when the caller stops early (or on an error) the other
    groups stop after the chunk they are in.

    Parameters
    ----------
    work : callable
        ``work(group)``, or ``work(group, items)`` with ``feed``, for a slice
        ``group`` of the channels: an iterable that treats channels
        independently. Every group must yield equally many results.
    channels : int
        How many channels there are.
    n_jobs : int or None
        See :func:`resolve_jobs`; 1 runs ``work`` in the calling thread on all channels.
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
    yield from _in_threads(work, _groups(channels, jobs), None if feed is None else iter(feed))


def _in_threads(work: Callable[..., Iterable[Any]], groups: list[slice], stream: Iterator[Item] | None) -> Iterator[list[Any]]:
    run = _Run()
    condition = run.condition
    members = [_Group(work, group, stream is not None, run) for group in groups]
    sent, ended = 0, stream is None
    try:
        for member in members:
            member.thread.start()
        while True:
            batch = None
            with condition:
                while True:
                    failed = next((member.error for member in members if member.error is not None), None)
                    if failed is not None:
                        raise failed
                    if all(member.results for member in members):
                        batch = [member.results.popleft() for member in members]
                        condition.notify_all()
                        break
                    if not ended and sent < min(member.taken for member in members) + BLOCKS_AHEAD:
                        break
                    if any(member.done and not member.results for member in members):
                        if any(member.results for member in members):
                            raise InternalError("channel groups gave different numbers of results")
                        if all(member.done for member in members):
                            return
                    condition.wait()
            if batch is not None:
                yield batch
                continue
            item = next(stream, None)  # read here, in the caller's thread, outside the lock
            with condition:
                for member in members:
                    member.inbox.append(None if item is None else _part(item, member.group))
                condition.notify_all()
            ended, sent = item is None, sent + 1
    finally:
        with condition:
            run.stopped = True
            condition.notify_all()
        deadline = time.monotonic() + JOIN_SECONDS
        for member in members:
            member.thread.join(max(0.0, deadline - time.monotonic()))


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
        rows, before any thread starts).
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
