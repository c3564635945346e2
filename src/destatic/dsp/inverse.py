"""The inverse STFT step of the DSP core: the same frames times their gains, overlap-added back.

The stream is cut into exactly the frames the subtract step made (steady
tones cancelled first), each frame is multiplied by its stored gains and the
frames are overlap-added to samples of exactly the input's length, with no
delay; the cancelled tones stay out (or, for the residue, are added back in).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from destatic.dsp._audio import check_sample_rate, checked_blocks
from destatic.dsp.framing import adder, checked_profile, group_rows, splitter, tone_canceller
from destatic.dsp.gains import GainRule
from destatic.dsp.parallel import run_channel_groups, split_stream
from destatic.dsp.profile import NoiseProfile
from destatic.dsp.stft import FrameCounter
from destatic.errors import ParameterError

__all__ = ["apply_gains", "apply_gains_by_group", "filter_blocks"]


def filter_blocks(
    blocks: Iterable[np.ndarray],
    profile: NoiseProfile,
    make_rule: Callable[[NoiseProfile, int], GainRule],
    *,
    residue: bool,
) -> Iterator[np.ndarray]:
    """STFT the blocks, multiply each frame by its gains, overlap-add back to exact length.

    The blocks and the profile are checked already (checked blocks, and the
    profile's rows for these channels). ``make_rule(profile, channels)`` is
    called once the first block shows the channel count; the rule
    (:class:`~destatic.dsp.gains.GainRule`) gives the gains of the spectra,
    possibly later (the learned rules look ahead): spectra wait until theirs come.
    A rule that answers every frame at once (``weigh``, the classic
    :class:`~destatic.dsp.gains.GainComputer`) multiplies the spectra in place
    in its own compiled loop instead.
    """
    framer = None
    removed_tones: _Queue | None = None
    waiting = _Queue(axis=1)

    def weighed(spectra: np.ndarray, *, final: bool = False) -> np.ndarray:
        """The spectra of the frames whose gains are known, times them (and those of the rest, at the end)."""
        if direct is not None:
            return direct(spectra, residue=residue)
        waiting.put(spectra)
        gains = np.concatenate([rule(spectra), rule.finish()], axis=1) if final else rule(spectra)
        return _apply(waiting.take(gains.shape[1]), gains, residue)

    for block in blocks:
        if framer is None:
            channels = block.shape[1]
            framer = splitter(profile, channels)
            overlap = adder(profile, channels)
            rule = make_rule(profile, channels)
            direct = getattr(rule, "weigh", None)
            canceller = tone_canceller(profile)
            if canceller is not None and residue:
                removed_tones = _Queue(axis=0)
        if canceller is not None:
            block, tones = canceller.process(block)
            if removed_tones is not None:
                removed_tones.put(tones)
        rule.push_samples(block)
        spectra = framer.push(block)
        if spectra.shape[1]:
            out = overlap.push(weighed(spectra))
            if out.shape[0]:
                yield out if removed_tones is None else out + removed_tones.take(out.shape[0])
    if framer is None:
        return
    spectra = framer.finish()
    overlap.limit = framer.n_samples
    out = overlap.push(weighed(spectra, final=True))
    tail = overlap.finish()
    final = np.concatenate([out, tail]) if tail.shape[0] else out
    if final.shape[0]:
        yield final if removed_tones is None else final + removed_tones.take(final.shape[0])


class _Queue:
    """First in, first out along one axis: hands out exactly the requested count from stored parts.

    Holds the tones removed from blocks until their output samples are due
    (axis 0), and gain frames until their spectra come (axis 1).
    """

    def __init__(self, axis: int, empty: np.ndarray | None = None):
        self._parts: collections.deque[np.ndarray] = collections.deque()
        self._axis = axis
        self._empty = empty
        self.size = 0

    def put(self, part: np.ndarray) -> None:
        if self._empty is None:
            self._empty = np.split(part, [0], axis=self._axis)[0]
        self._parts.append(part)
        self.size += part.shape[self._axis]

    def take(self, count: int) -> np.ndarray:
        """The next `count` along the axis; the caller makes sure that many are stored."""
        taken: list[np.ndarray] = []
        self.size -= count
        while count:
            part = self._parts.popleft()
            have = part.shape[self._axis]
            if have > count:
                head, rest = np.split(part, [count], axis=self._axis)
                taken.append(head)
                self._parts.appendleft(rest)
                break
            taken.append(part)
            count -= have
        if not taken:
            return self._empty
        return taken[0] if len(taken) == 1 else np.concatenate(taken, axis=self._axis)


class _GainReader:
    """Hand out exactly the requested number of gain frames from a stream of chunks."""

    def __init__(self, gains: Iterable[np.ndarray], channels: int, bins: int):
        self._chunks = iter(gains)
        self._channels = channels
        self._bins = bins
        self._buffer = _Queue(axis=1, empty=np.zeros((channels, 0, bins), np.float32))

    def take(self, n_frames: int) -> np.ndarray:
        while self._buffer.size < n_frames:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise ParameterError(
                    f"the gains ran out: {n_frames - self._buffer.size} more frames were needed; "
                    "gains must come from compute_gains on the same audio and profile"
                )
            chunk = np.asarray(chunk)
            if chunk.ndim != 3 or chunk.shape[0] != self._channels or chunk.shape[2] != self._bins:
                raise ParameterError(
                    f"a gain chunk has shape {chunk.shape}; it must be "
                    f"({self._channels}, frames, {self._bins})"
                )
            self._buffer.put(chunk)
        return self._buffer.take(n_frames)

    def check_exhausted(self) -> None:
        extra = self._buffer.size + sum(chunk.shape[1] for chunk in self._chunks)
        if extra:
            raise ParameterError(
                f"{extra} gain frames were left over; gains must come from compute_gains "
                "on the same audio and profile"
            )


def _apply(spectra: np.ndarray, gains: np.ndarray, residue: bool) -> np.ndarray:
    """``spectra`` (complex64) times ``gains`` (one minus them for the residue), in place.

    float16 gains (a gains file's) are widened inside a compiled loop, not by
    numpy's cast (4x slower than the multiplication itself).
    """
    if gains.dtype == np.float16 and spectra.dtype == np.complex64 and spectra.flags.c_contiguous and gains.shape[1]:
        from destatic.dsp import _kernels  # noqa: PLC0415  (numba loads on first use, not on import)

        _kernels.weigh_by_halves(spectra.view(np.float32), np.ascontiguousarray(gains).view(np.uint16), residue)
        return spectra
    gains = gains.astype(np.float32, copy=False)
    return np.multiply(spectra, (1 - gains) if residue else gains, out=spectra)


def apply_gains(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    gains: Iterable[np.ndarray],
    *,
    profile: NoiseProfile,
    residue: bool = False,
    n_jobs: int | None = 1,
) -> Iterator[np.ndarray]:
    """Apply gains from :func:`~destatic.dsp.compute_gains` to the same audio; yield the result.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,) or (n, channels)]
        The audio the gains were computed for, any block sizes.
    sample_rate : int
        Hz.
    gains : iterable of np.ndarray [shape=(channels, frames, bins)]
        The gains in frame order, in chunks of any size (e.g. slices of a memmap).
    profile : NoiseProfile
        The profile the gains were computed with (gives the framing).
    residue : bool
        Yield what the gains remove (input minus output) instead.
    n_jobs : int or None
        Threads sharing the channels (1: all in the calling thread); ``None``
        is one per channel up to the CPUs available. Channels are filtered
        independently, so the result is the same for any value.

    Yields
    ------
    np.ndarray [shape=(n, channels), dtype=float32]
        Output blocks; together exactly as long as the input and sample-aligned
        with it (no delay). Block sizes need not match the input's.
    """
    sample_rate = check_sample_rate(sample_rate)

    def work_for(channels: int) -> Callable[[slice, Iterator[tuple[np.ndarray, np.ndarray]]], Iterator[np.ndarray]]:
        rows_of = group_rows(sample_rate, profile, channels)
        return lambda group, pairs: apply_to_channels(pairs, profile=rows_of(group), residue=residue)

    pairs = with_their_gains(checked_blocks(blocks), gains, sample_rate, profile)
    yield from split_stream(pairs, work_for, n_jobs=n_jobs, axis=1)


def apply_gains_by_group(
    blocks_of: Callable[[slice], Iterable[np.ndarray]],
    gains_of: Callable[[slice], Iterable[np.ndarray]],
    channels: int,
    sample_rate: int,
    *,
    profile: NoiseProfile,
    residue: bool = False,
    n_jobs: int | None = 1,
) -> Iterator[np.ndarray]:
    """:func:`apply_gains` where each group of channels reads its audio and gains in its own thread.

    Only the output comes back to the calling thread (where
    :func:`apply_gains` reads the audio and the gains and hands them out
    too); it is the same.

    Parameters
    ----------
    blocks_of : callable
        ``blocks_of(group)`` gives the audio of the channels ``group`` (a
        slice), shape ``(n, group size)``, any block sizes; called in the
        thread that filters them.
    gains_of : callable
        ``gains_of(group)`` gives their gains, chunks of shape ``(group size,
        frames, bins)`` in frame order; called in that same thread.
    channels : int
        The audio's channel count.
    sample_rate, profile, residue, n_jobs
        As for :func:`apply_gains`.

    Yields
    ------
    np.ndarray [shape=(n, channels), dtype=float32]
        As :func:`apply_gains` does.
    """
    sample_rate = check_sample_rate(sample_rate)
    rows_of = group_rows(sample_rate, profile, channels)

    def work(group: slice) -> Iterator[np.ndarray]:
        rows = rows_of(group)
        blocks = checked_blocks(blocks_of(group), group.stop - group.start)
        pairs = with_their_gains(blocks, gains_of(group), sample_rate, rows)
        yield from apply_to_channels(pairs, profile=rows, residue=residue)

    for parts in run_channel_groups(work, channels, n_jobs=n_jobs):
        yield parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def with_their_gains(
    blocks: Iterable[np.ndarray], gains: Iterable[np.ndarray], sample_rate: int, profile: NoiseProfile
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pair each block with the gain frames it completes; the last block takes the rest.

    Checks that the gains have the right shape and exactly the frames the audio needs.
    """
    counter: FrameCounter | None = None
    held: tuple[np.ndarray, int] | None = None
    for block in blocks:
        if counter is None:
            profile = checked_profile(profile, sample_rate, block.shape[1])
            reader = _GainReader(gains, block.shape[1], profile.bins)
            counter = FrameCounter(
                n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered
            )
        if held is not None:
            yield held[0], reader.take(held[1])
        held = (block, counter.push(block.shape[0]))
    if held is not None and counter is not None:
        last = reader.take(held[1] + counter.finish())
        reader.check_exhausted()
        yield held[0], last


def apply_to_channels(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    profile: NoiseProfile,
    residue: bool,
) -> Iterator[np.ndarray]:
    """:func:`apply_gains` on ``(block, its gains)`` pairs, in this thread.

    Each block comes with exactly the gain frames it completes (checked by
    :func:`with_their_gains`), so the frames wait in a queue until its spectra do.
    """
    pending = _Queue(axis=1)

    def blocks() -> Iterator[np.ndarray]:
        for block, gains in pairs:
            pending.put(gains)
            yield block

    yield from filter_blocks(blocks(), profile, lambda profile, channels: _StoredGains(pending, profile, channels), residue=residue)


class _StoredGains:
    """The gain rule of stored gains (:class:`~destatic.dsp.gains.GainRule`): each frame's, as it comes."""

    def __init__(self, pending: _Queue, profile: NoiseProfile, channels: int):
        self._pending, self._empty = pending, np.zeros((channels, 0, profile.bins), np.float32)

    def push_samples(self, block: np.ndarray) -> None:
        """Stored gains need no samples."""

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        return self._pending.take(spectra.shape[1])

    def finish(self) -> np.ndarray:
        return self._empty
