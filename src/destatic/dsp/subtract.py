"""The subtract step of the DSP core: spectra of a stream -> suppression gains, chunk by chunk.

Steady tones are cancelled first (:mod:`destatic.dsp.tones`), the rest is
framed by the profile's STFT and each frame's gains come from the stateful
rule of :mod:`destatic.dsp.gains`. The gains are what the inverse step
(:mod:`destatic.dsp.inverse`) multiplies the same frames by.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from destatic.dsp._audio import check_sample_rate, checked_blocks
from destatic.dsp.framing import group_rows, splitter, tone_canceller
from destatic.dsp.gains import GainComputer, GainRule, SeedGain
from destatic.dsp.learned import LearnedGainComputer
from destatic.dsp.methods import METHOD_SPECS, build_options, method_spec, methods_listed, resolve_method
from destatic.dsp.options import SuppressionOptions
from destatic.dsp.parallel import run_channel_groups, split_stream
from destatic.dsp.profile import NoiseProfile
from destatic.dsp.stft import frame_count

__all__ = ["compute_gains", "compute_gains_by_group", "gain_dtype", "gain_shape", "gains_of_channels", "rule_for"]


RULES: dict[str, Callable[[NoiseProfile, str, SuppressionOptions], GainRule]] = {
    rule.__name__: rule for rule in (SeedGain, GainComputer, LearnedGainComputer)
}
"""The gain rules, by the name a method's record gives (:attr:`destatic.dsp.methods.MethodSpec.rule`)."""


def rule_for(profile: NoiseProfile, method: str, options: SuppressionOptions) -> GainRule:
    """The gain rule of one stream for `method` (resolved): the class its record names."""
    return RULES[METHOD_SPECS[method].rule](profile, method, options)


def gain_shape(n_samples: int, profile: NoiseProfile) -> tuple[int, int, int]:
    """Shape ``(channels, frames, bins)`` of all gains for ``n_samples`` samples.

    For preallocating the array (or gains file) that :func:`compute_gains`'
    chunks are written into.
    """
    frames = frame_count(
        n_samples, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered
    )
    return profile.channels, frames, profile.bins


def gain_dtype(method: str | None) -> np.dtype:
    """The float type to store ``method``'s gains in, as its record says: float16 where they lie in [-1, 1], else float32.

    float16 rounds such gains by at most 5e-4 (about -66 dB, inaudible) and
    halves what is stored; the ``seed`` method's gains are unbounded.
    """
    return np.dtype(method_spec(resolve_method(method)).gain_dtype)


@methods_listed
def compute_gains(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    profile: NoiseProfile,
    *,
    method: str | None = None,
    n_jobs: int | None = 1,
    suppression: SuppressionOptions | None = None,
    **options: Any,
) -> Iterator[np.ndarray]:
    """Yield the suppression gains of a stream, chunk by chunk, in frame order.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,) or (n, channels)]
        The audio, any block sizes.
    sample_rate : int
        Hz; must equal ``profile.sample_rate``.
    profile : NoiseProfile
        Noise estimate (and framing). An ``auto`` profile only seeds the
        estimate, which keeps following the noise through the stream.
    method : str or None
        One of {methods}; ``None`` is the default.
    n_jobs : int or None
        Threads sharing the channels (1: all in the calling thread); ``None``
        is one per channel up to the CPUs available. Channels are filtered
        independently, so the result is the same for any value.
    **options
        The options the method takes (:func:`~destatic.dsp.denoise`), e.g. ``max_reduction_db=20``.
    suppression : SuppressionOptions or None
        Instead of ``**options``: the method's option record, built already
        (:meth:`destatic.settings.SuppressionSettings.options`).

    Yields
    ------
    np.ndarray [shape=(channels, frames, n_fft // 2 + 1), dtype=float32]
        Real gains; all chunks together have :func:`gain_shape` frames.
        :func:`gain_dtype` says what to store them as.
    """
    sample_rate = check_sample_rate(sample_rate)
    method = resolve_method(method)
    settings = build_options(method, options, suppression)

    def work_for(channels: int) -> Callable[[slice, Iterator[np.ndarray]], Iterator[np.ndarray]]:
        rows_of = group_rows(sample_rate, profile, channels)
        return lambda group, items: gains_of_channels(items, profile=rows_of(group), method=method, options=settings)

    yield from split_stream(checked_blocks(blocks), work_for, n_jobs=n_jobs, axis=0, together=lambda channels: method_spec(method).filters_together(settings, channels))


def compute_gains_by_group(
    blocks_of: Callable[[slice], Iterable[np.ndarray]],
    channels: int,
    sample_rate: int,
    profile: NoiseProfile,
    store: Callable[[slice, int, np.ndarray], None],
    *,
    method: str | None = None,
    n_jobs: int | None = 1,
    suppression: SuppressionOptions | None = None,
    **options: Any,
) -> Iterator[int]:
    """:func:`compute_gains` where each group of channels is read, filtered and stored by its own thread.

    For audio every thread can read for itself (a file): the calling thread
    only collects progress, where :func:`compute_gains` reads the audio and
    hands each thread its channels. The gains are the same.

    Parameters
    ----------
    blocks_of : callable
        ``blocks_of(group)`` gives the audio of the channels ``group`` (a
        slice), shape ``(n, group size)``, any block sizes; it is called in
        the thread that filters them.
    channels : int
        The audio's channel count.
    sample_rate : int
        Hz; must equal ``profile.sample_rate``.
    profile : NoiseProfile
        As for :func:`compute_gains`.
    store : callable
        ``store(group, first_frame, gains)`` keeps the gains of the channels
        ``group``, shape ``(group size, frames, bins)``, from frame
        ``first_frame`` on; called in the same thread, in frame order.
    method, n_jobs, suppression, **options
        As for :func:`compute_gains`.

    Yields
    ------
    int
        Frames done in every channel, after each chunk.
    """
    sample_rate = check_sample_rate(sample_rate)
    method = resolve_method(method)
    settings = build_options(method, options, suppression)
    rows_of = group_rows(sample_rate, profile, channels)

    def work(group: slice) -> Iterator[int]:
        done = 0
        blocks = checked_blocks(blocks_of(group), group.stop - group.start)
        for gains in gains_of_channels(blocks, profile=rows_of(group), method=method, options=settings):
            store(group, done, gains)
            done += gains.shape[1]
            yield done

    for done in run_channel_groups(work, channels, n_jobs=1 if method_spec(method).filters_together(settings, channels) else n_jobs):
        yield min(done)


def gains_of_channels(
    blocks: Iterable[np.ndarray],
    *,
    profile: NoiseProfile,
    method: str,
    options: SuppressionOptions,
) -> Iterator[np.ndarray]:
    """:func:`compute_gains` for checked blocks and a profile with their channels, in this thread.

    A rule that looks ahead (the learned ones) may answer a block's frames
    later; every frame gets its gains by the end, in order.
    """
    framer = None
    rule: GainRule | None = None
    for block in blocks:
        if framer is None:
            framer = splitter(profile, block.shape[1])
            rule = rule_for(profile, method, options)
            canceller = tone_canceller(profile)
        if canceller is not None:
            block = canceller.process(block)[0]
        rule.push_samples(block)
        spectra = framer.push(block)
        if spectra.shape[1] and (gains := rule(spectra)).shape[1]:
            yield gains
    if framer is not None:
        spectra = framer.finish()
        gains = np.concatenate([rule(spectra), rule.finish()], axis=1)
        if gains.shape[1]:
            yield gains
