"""Noise profiles: how loud the noise is in each channel and frequency bin."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any

import numpy as np

from destatic.dsp._audio import (
    as_audio,
    check_number,
    check_sample_rate,
    checked_blocks,
    iter_array_blocks,
)
from destatic.dsp.choices import HUM_MODES, PROFILE_MODES, HumMode, ProfileMode, profile_mode
from destatic.dsp.options import HEAD_SAMPLES
from destatic.dsp.noise import (
    SMOOTHING_SECONDS,
    min_window_frames,
    minimum_bias,
    one_pole,
    smooth_bins,
    smoothing_factor,
)
from destatic.dsp.stft import FrameSplitter, resolve_fft_size
from destatic.dsp.tones import Tones, ToneStage, find_hum
from destatic.errors import ParameterError, UncleanableAudioError

__all__ = ["PROFILE_MODES", "NoiseProfile", "ProfileMode", "estimate_profile", "find_hum", "profile_from_blocks"]

FORMAT_VERSION = 1
BLOCK_SIZE = 1 << 16


def _frozen_array(values: Any) -> np.ndarray:
    array = np.array(values, dtype=np.float32, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class NoiseProfile:
    """Noise power per channel and frequency bin, with the framing it belongs to.

    Parameters
    ----------
    power : np.ndarray [shape=(channels, n_fft // 2 + 1)]
        Mean noise power ``E|N|^2`` of the Hann-windowed, unnormalised STFT.
    magnitude : np.ndarray [shape=(channels, n_fft // 2 + 1)]
        Mean magnitude ``E|N|`` (what the ``seed`` method subtracts).
    sample_rate : int
        Hz.
    n_fft, hop_length : int
        Framing of the STFT the profile was measured with.
    mode : {'head', 'segment', 'file', 'auto'}
        How it was made: the first samples, a stretch given in seconds, a
        separate recording, or minimum statistics over speech.
    centered : bool
        ``True`` for librosa's centred framing (the ``seed`` method).
    details : mapping of str to str, int or float
        Provenance, e.g. ``{"start_s": 0.0, "end_s": 1.0, "frames": 60}``.
    tones : np.ndarray [shape=(tones,)]
        Frequencies in Hz of steady tones (hum) found in the noise clip; the
        power above is measured with them subtracted, and the denoiser
        subtracts them too (:mod:`destatic.dsp.tones`). For ``auto``, the
        mains hum that persists through the recording (:func:`find_hum`).
    tone_amplitudes : np.ndarray [shape=(channels, tones), complex]
        Their complex amplitudes referred to sample 0 of the stream (zeros
        for a separate noise recording, whose phase means nothing here).

    Notes
    -----
    Immutable (arrays are read-only); :meth:`save` / :meth:`load` use ``.npz``
    with arrays only, no pickle.
    """

    power: np.ndarray
    magnitude: np.ndarray
    sample_rate: int
    n_fft: int
    hop_length: int
    mode: str
    centered: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)
    tones: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tone_amplitudes: np.ndarray | None = None

    def __post_init__(self) -> None:
        power = _frozen_array(self.power)
        magnitude = _frozen_array(self.magnitude)
        tones, tone_amplitudes = _checked_tones(
            self.tones, self.tone_amplitudes, power.shape[0], self.sample_rate
        )
        check_sample_rate(self.sample_rate)
        n_fft, hop_length = resolve_fft_size(self.sample_rate, self.n_fft, self.hop_length)
        bins = n_fft // 2 + 1
        for name, array in (("power", power), ("magnitude", magnitude)):
            if array.ndim != 2 or array.shape[1] != bins or array.shape[0] < 1:
                raise ParameterError(
                    f"NoiseProfile.{name} has shape {array.shape}; it must be (channels, {bins}) "
                    f"for n_fft={n_fft}"
                )
            if not np.isfinite(array).all() or (array < 0).any():
                raise ParameterError(f"NoiseProfile.{name} must be finite and non-negative")
        if power.shape != magnitude.shape:
            raise ParameterError(
                f"NoiseProfile.power {power.shape} and magnitude {magnitude.shape} differ in shape"
            )
        if self.mode not in PROFILE_MODES:
            raise ParameterError(f"NoiseProfile.mode={self.mode!r} must be one of {PROFILE_MODES}")
        object.__setattr__(self, "power", power)
        object.__setattr__(self, "magnitude", magnitude)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "centered", bool(self.centered))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
        object.__setattr__(self, "tones", tones)
        object.__setattr__(self, "tone_amplitudes", tone_amplitudes)

    @property
    def channels(self) -> int:
        """Number of channels profiled."""
        return self.power.shape[0]

    @property
    def bins(self) -> int:
        """``n_fft // 2 + 1``."""
        return self.power.shape[1]

    @property
    def frequencies(self) -> np.ndarray:
        """Centre frequency of each bin in Hz, shape ``(bins,)``."""
        return np.arange(self.bins) * (self.sample_rate / self.n_fft)

    def power_db(self) -> np.ndarray:
        """Noise power in dB relative to a full-scale sine's peak bin, ``(channels, bins)``."""
        full_scale = (np.sum(np.hanning(self.n_fft + 1)[:-1]) / 2) ** 2
        return 10 * np.log10(np.maximum(self.power / full_scale, 1e-20))

    def for_channels(self, channels: int) -> NoiseProfile:
        """This profile for ``channels`` channels: itself, or a mono profile repeated."""
        if channels == self.channels:
            return self
        if self.channels != 1:
            raise UncleanableAudioError(
                f"the noise profile has {self.channels} channels but the audio has {channels}; "
                "a profile must have the audio's channel count, or 1"
            )
        return self._with_rows(np.zeros(channels, np.intp))

    def for_another_recording(self) -> NoiseProfile:
        """This profile for a recording other than the one it was measured on.

        The noise spectrum carries over; the steady tones' amplitudes and
        phases, referred to the first sample of the measured stream, do not:
        they are learned anew from the new recording (as for a separate noise
        recording, ``mode='file'``).
        """
        return dataclasses.replace(self, tone_amplitudes=None)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.power, self.magnitude, self.sample_rate, self.n_fft, self.hop_length)
        rest = (self.mode, self.centered, dict(self.details), self.tones, self.tone_amplitudes)
        return (NoiseProfile, (*fields, *rest))

    def channel_rows(self, rows: slice) -> NoiseProfile:
        """This profile restricted to the channels ``rows`` (for filtering them apart)."""
        if self.channels == 1:
            return self
        return self._with_rows(rows)

    def _with_rows(self, rows: slice | np.ndarray) -> NoiseProfile:
        return NoiseProfile(
            power=self.power[rows],
            magnitude=self.magnitude[rows],
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            mode=self.mode,
            centered=self.centered,
            details=self.details,
            tones=self.tones,
            tone_amplitudes=self.tone_amplitudes[rows],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoiseProfile):
            return NotImplemented
        return (
            (self.sample_rate, self.n_fft, self.hop_length, self.mode, self.centered)
            == (other.sample_rate, other.n_fft, other.hop_length, other.mode, other.centered)
            and dict(self.details) == dict(other.details)
            and np.array_equal(self.power, other.power)
            and np.array_equal(self.magnitude, other.magnitude)
            and np.array_equal(self.tones, other.tones)
            and np.array_equal(self.tone_amplitudes, other.tone_amplitudes)
        )

    __hash__ = None  # type: ignore[assignment]

    def save(self, file: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write the profile to ``file`` (a path or binary file object) as ``.npz``."""
        np.savez(
            file,
            format_version=np.int64(FORMAT_VERSION),
            power=self.power,
            magnitude=self.magnitude,
            sample_rate=np.int64(self.sample_rate),
            n_fft=np.int64(self.n_fft),
            hop_length=np.int64(self.hop_length),
            mode=np.str_(self.mode),
            centered=np.bool_(self.centered),
            details=np.str_(json.dumps(dict(self.details), sort_keys=True)),
            tones=self.tones,
            tone_amplitudes=self.tone_amplitudes,
        )

    @classmethod
    def load(cls, file: str | os.PathLike[str] | IO[bytes]) -> NoiseProfile:
        """Read a profile written by :meth:`save`; raise ParameterError if it is not one."""
        try:
            with np.load(file, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != FORMAT_VERSION:
                    raise ParameterError(
                        f"noise profile format_version={version} is not supported "
                        f"(this destatic reads version {FORMAT_VERSION})"
                    )
                return cls(
                    power=data["power"],
                    magnitude=data["magnitude"],
                    sample_rate=int(data["sample_rate"]),
                    n_fft=int(data["n_fft"]),
                    hop_length=int(data["hop_length"]),
                    mode=str(data["mode"]),
                    centered=bool(data["centered"]),
                    details=json.loads(str(data["details"])),
                    tones=data["tones"] if "tones" in data else np.zeros(0),
                    tone_amplitudes=data["tone_amplitudes"] if "tones" in data else None,
                )
        except (KeyError, ValueError, OSError) as error:
            if isinstance(error, ParameterError):
                raise
            raise ParameterError(
                f"{file!r} is not a destatic noise profile (.npz): {error}"
            ) from error


def _checked_tones(
    tones: Any, amplitudes: Any, channels: int, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    frequencies = np.array(tones, dtype=np.float64, copy=True).reshape(-1)
    if not np.isfinite(frequencies).all() or ((frequencies <= 0) | (frequencies >= sample_rate / 2)).any():
        raise ParameterError(
            f"NoiseProfile.tones={frequencies!r} must be frequencies between 0 and {sample_rate / 2} Hz"
        )
    if amplitudes is None:
        amplitudes = np.zeros((channels, frequencies.size), np.complex128)
    values = np.array(amplitudes, dtype=np.complex128, copy=True)
    if values.shape != (channels, frequencies.size) or not np.isfinite(values).all():
        raise ParameterError(
            f"NoiseProfile.tone_amplitudes has shape {values.shape}; it must be finite, "
            f"(channels, tones) = ({channels}, {frequencies.size})"
        )
    frequencies.flags.writeable = False
    values.flags.writeable = False
    return frequencies, values


class _MeanAccumulator:
    """Mean power and magnitude over the frames of one clip of the stream."""

    def __init__(self, channels: int, n_fft: int, hop_length: int, centered: bool):
        self.splitter = FrameSplitter(
            channels, n_fft=n_fft, hop_length=hop_length, centered=centered, padded=centered
        )
        self.power = np.zeros((channels, n_fft // 2 + 1))
        self.magnitude = np.zeros((channels, n_fft // 2 + 1))
        self.frames = 0

    def add(self, spectra: np.ndarray) -> None:
        magnitude = np.abs(spectra).astype(np.float64)
        self.magnitude += magnitude.sum(axis=1)
        self.power += (magnitude**2).sum(axis=1)
        self.frames += spectra.shape[1]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.add(self.splitter.finish())
        return self.power / self.frames, self.magnitude / self.frames


class _MinimumAccumulator:
    """Minimum statistics over consecutive 1.5 s windows of the smoothed periodogram."""

    def __init__(self, channels: int, sample_rate: int, n_fft: int, hop_length: int):
        self.splitter = FrameSplitter(channels, n_fft=n_fft, hop_length=hop_length, padded=False)
        self.overlap = n_fft // hop_length
        self.window = min_window_frames(sample_rate, hop_length)
        self.smoothing = smoothing_factor(SMOOTHING_SECONDS, sample_rate, hop_length)
        self.state: np.ndarray | None = None
        self.current_min: np.ndarray | None = None
        self.current_len = 0
        self.weighted_sum = np.zeros((channels, n_fft // 2 + 1))
        self.weight = 0
        self.frames = 0

    def add(self, spectra: np.ndarray) -> None:
        if spectra.shape[1] == 0:
            return
        power = smooth_bins(np.abs(spectra).astype(np.float64) ** 2)
        if self.state is None:
            self.state = power[:, 0, :]
        smoothed, self.state = one_pole(power, self.smoothing, self.state, axis=1)
        self.frames += smoothed.shape[1]
        start = 0
        while start < smoothed.shape[1]:
            take = min(self.window - self.current_len, smoothed.shape[1] - start)
            part_min = smoothed[:, start : start + take].min(axis=1)
            self.current_min = (
                part_min if self.current_min is None else np.minimum(self.current_min, part_min)
            )
            self.current_len += take
            start += take
            if self.current_len == self.window:
                self._close_window()

    def _close_window(self) -> None:
        if self.current_min is None or self.current_len == 0:
            return
        bias = minimum_bias(self.current_len, self.overlap, self.smoothing)
        self.weighted_sum += self.current_len * bias * self.current_min
        self.weight += self.current_len
        self.current_min = None
        self.current_len = 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.add(self.splitter.finish())
        if self.current_len >= max(4, self.window // 4) or self.weight == 0:
            self._close_window()
        power = self.weighted_sum / self.weight
        return power, np.sqrt(np.pi * power) / 2


def profile_from_blocks(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    *,
    mode: ProfileMode | None = None,
    head_samples: int = HEAD_SAMPLES,
    start_s: float | None = None,
    end_s: float | None = None,
    auto_seconds: float = 8.0,
    n_fft: int | None = None,
    hop_length: int | None = None,
    centered: bool = False,
    hum: HumMode = "auto",
    tones: Tones | None = None,
) -> NoiseProfile:
    """Measure a noise profile from a stream of blocks, in bounded memory.

    Reading stops as soon as the profile is complete, so a ``head`` or
    ``auto`` profile of a long file reads only its beginning.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,) or (n, channels)]
        The audio (or, for ``mode='file'``, the noise recording), in order.
    sample_rate : int
        Hz, 8000 to 192000.
    mode : {'auto', 'head', 'segment', 'file'} or None
        ``head``: the first ``head_samples`` samples are noise only.
        ``segment``: ``[start_s, end_s)`` seconds are noise only.
        ``file``: the whole stream is noise only.
        ``auto``: no noise-only stretch; minimum statistics over the first
        ``auto_seconds`` (works with speech from the start).
        ``None`` derives it: ``segment`` if ``start_s`` or ``end_s`` is given,
        else ``auto``.
    head_samples : int > 0
        Length of the ``head`` clip; 8192 as in the seed tutorial.
    start_s, end_s : float or None
        Bounds of the ``segment`` clip in seconds (``None``: start / end of stream).
    auto_seconds : float > 0
        How much of the stream ``auto`` looks at.
    n_fft, hop_length : int or None
        Framing; ``None`` derives it from the sample rate.
    centered : bool
        librosa's centred framing, with the clip zero-padded at both ends as
        ``librosa.stft`` does (the ``seed`` method's profile).
    hum : {'auto', 'off'}
        ``auto``: steady tones found in a measured clip are cancelled (and
        ``tones`` taken); ``off``: none are.
    tones : (frequencies, amplitudes) or None
        ``auto`` only: steady tones found beforehand (:func:`find_hum`), held
        by the profile and cancelled before it is measured.

    Returns
    -------
    NoiseProfile
    """
    sample_rate = check_sample_rate(sample_rate)
    mode = profile_mode(mode, segment=start_s is not None or end_s is not None)
    if hum not in HUM_MODES:
        raise ParameterError(f"hum={hum!r} must be one of {HUM_MODES}")
    if tones is not None and (mode != "auto" or centered):
        raise ParameterError(f"tones found beforehand are for mode='auto' without centred framing, not mode={mode!r}")
    n_fft, hop_length = resolve_fft_size(sample_rate, n_fft, hop_length)
    if mode == "head":
        if isinstance(head_samples, bool) or not isinstance(head_samples, int) or head_samples < 1:
            raise ParameterError(f"head_samples={head_samples!r} must be a positive integer")
        first, last = 0, head_samples
    elif mode == "segment":
        low = 0.0 if start_s is None else check_number(
            "start_s", start_s, low=0.0, allowed="a non-negative number of seconds"
        )
        high = math.inf if end_s is None else check_number(
            "end_s", end_s, low=0.0, allowed="a non-negative number of seconds"
        )
        if high <= low:
            raise ParameterError(f"end_s={end_s!r} must be greater than start_s={start_s!r}")
        first = round(low * sample_rate)
        last = math.inf if high == math.inf else max(round(high * sample_rate), first + 1)
    elif mode == "auto":
        seconds = check_number(
            "auto_seconds", auto_seconds, low=1e-3, allowed="a positive number of seconds"
        )
        first, last = 0, max(round(seconds * sample_rate), 1)
    else:
        first, last = 0, math.inf

    accumulator: _MeanAccumulator | _MinimumAccumulator | None = None
    if hum == "off" or centered or (mode == "auto" and tones is None):
        stage = None
    else:
        stage = ToneStage(sample_rate, first, reference=mode != "file", known=tones)
    position = 0
    for block in checked_blocks(blocks):
        if accumulator is None:
            channels = block.shape[1]
            accumulator = (
                _MinimumAccumulator(channels, sample_rate, n_fft, hop_length)
                if mode == "auto"
                else _MeanAccumulator(channels, n_fft, hop_length, centered)
            )
        stop = None if last == math.inf else max(last - position, 0)
        clip = block[max(first - position, 0) : stop]
        position += block.shape[0]
        for part in stage.push(clip) if stage is not None else [clip]:
            accumulator.add(accumulator.splitter.push(part))
        if position >= last:
            break
    if stage is not None and accumulator is not None:
        for part in stage.finish():
            accumulator.add(accumulator.splitter.push(part))
    if accumulator is None or accumulator.splitter.n_samples == 0:
        raise UncleanableAudioError(
            f"no samples to profile: the audio is {position / sample_rate:g} s long and the "
            f"{mode} noise stretch starts at {first / sample_rate:g} s"
        )
    used = accumulator.splitter.n_samples
    power, magnitude = accumulator.result()
    details: dict[str, Any] = {
        "start_s": first / sample_rate,
        "end_s": (first + used) / sample_rate,
        "frames": int(accumulator.frames),
    }
    if stage is not None and stage.frequencies.size:
        details["tones"] = int(stage.frequencies.size)
    return NoiseProfile(
        power=power,
        magnitude=magnitude,
        sample_rate=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        mode=mode,
        centered=centered,
        details=details,
        tones=np.zeros(0) if stage is None else stage.frequencies,
        tone_amplitudes=None if stage is None else stage.reference_amplitudes,
    )


def estimate_profile(
    audio: np.ndarray,
    sample_rate: int,
    *,
    mode: ProfileMode | None = None,
    head_samples: int = HEAD_SAMPLES,
    start_s: float | None = None,
    end_s: float | None = None,
    noise_audio: np.ndarray | None = None,
    auto_seconds: float = 8.0,
    n_fft: int | None = None,
    hop_length: int | None = None,
    centered: bool = False,
    hum: HumMode = "auto",
) -> NoiseProfile:
    """Measure the noise profile of ``audio`` held in memory.

    Same as :func:`profile_from_blocks` (see there for the parameters), plus
    ``mode='file'`` with a separate noise recording ``noise_audio``
    (``mode=None`` derives ``file`` when it is given). The noise recording must
    have the audio's channel count, or one channel (used for every channel).
    An ``auto`` profile holds the mains hum found through ``audio``
    (:func:`find_hum`) unless ``hum='off'``.

    Parameters
    ----------
    audio : np.ndarray [shape=(frames,) or (frames, channels)]
        The recording to denoise.
    sample_rate : int
        Hz, of both ``audio`` and ``noise_audio``.

    Returns
    -------
    NoiseProfile
        With as many channels as ``audio``.
    """
    samples = as_audio(audio)
    mode = profile_mode(mode, noise_file=noise_audio is not None, segment=start_s is not None or end_s is not None)
    if mode == "file":
        if noise_audio is None:
            raise ParameterError("mode='file' needs noise_audio, a separate noise recording")
        source = as_audio(noise_audio, name="noise_audio")
    else:
        if noise_audio is not None:
            raise ParameterError(f"noise_audio is only used with mode='file', not mode={mode!r}")
        source = samples
    tones = None
    if mode == "auto" and hum == "auto" and not centered:
        tones = find_hum(lambda start, stop: samples[start:stop], samples.shape[0], sample_rate)
    profile = profile_from_blocks(
        iter_array_blocks(source, BLOCK_SIZE),
        sample_rate,
        mode=mode,
        head_samples=head_samples,
        start_s=start_s,
        end_s=end_s,
        auto_seconds=auto_seconds,
        n_fft=n_fft,
        hop_length=hop_length,
        centered=centered,
        hum=hum,
        tones=tones,
    )
    return profile.for_channels(samples.shape[1])
