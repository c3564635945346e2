"""The streaming STFT engine: exact identity, exact length, zero lag."""

from __future__ import annotations

import numpy as np
import pytest

from destatic.dsp import frame_count
from destatic.dsp.stft import FrameSplitter, OverlapAdder, default_n_fft, hann_window, resolve_fft_size, spectrogram_db
from destatic.errors import ParameterError


def round_trip(x: np.ndarray, n_fft: int, hop: int, block: int, centered: bool = False):
    channels = x.shape[1]
    splitter = FrameSplitter(channels, n_fft=n_fft, hop_length=hop, centered=centered)
    adder = OverlapAdder(channels, n_fft=n_fft, hop_length=hop, centered=centered)
    outputs, frames = [], 0
    for start in range(0, x.shape[0], block):
        spectra = splitter.push(x[start : start + block])
        frames += spectra.shape[1]
        outputs.append(adder.push(spectra))
    adder.limit = x.shape[0]
    spectra = splitter.finish()
    frames += spectra.shape[1]
    outputs += [adder.push(spectra), adder.finish()]
    return np.concatenate(outputs), frames


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 48000, 96000, 192000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_unit_gain_round_trip_is_identity(sample_rate, channels, rng):
    n_fft, hop = resolve_fft_size(sample_rate)
    n = int(0.3 * sample_rate) + 17
    x = rng.uniform(-1, 1, (n, channels)).astype(np.float32)
    y, frames = round_trip(x, n_fft, hop, block=4099)
    assert y.shape == x.shape
    assert frames == frame_count(n, sample_rate)
    assert np.max(np.abs(y - x)) < 1e-5


@pytest.mark.parametrize("n", [1, 5, 127, 128, 129, 511, 512, 513, 1000])
@pytest.mark.parametrize("centered", [False, True])
def test_any_length_and_block_size(n, centered, rng):
    x = rng.standard_normal((n, 2)).astype(np.float32)
    for block in (1, 7, 128, 10_000):
        y, frames = round_trip(x, 512, 128, block, centered)
        assert y.shape == x.shape
        assert frames == frame_count(n, n_fft=512, hop_length=128, centered=centered)
        assert np.max(np.abs(y - x)) < 1e-5


def test_output_has_zero_lag(rng):
    x = np.zeros((4000, 1), np.float32)
    x[1234] = 1.0
    y, _ = round_trip(x, 256, 64, 333)
    assert int(np.argmax(np.abs(y[:, 0]))) == 1234


def test_default_fft_sizes_are_about_64_ms():
    for sample_rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000):
        n_fft = default_n_fft(sample_rate)
        assert 0.064 <= n_fft / sample_rate < 0.07
        assert n_fft % 4 == 0
    assert default_n_fft(16000) == 1024 and default_n_fft(48000) == 3072


def test_bad_framing_is_refused():
    with pytest.raises(ParameterError, match="hop_length=300"):
        resolve_fft_size(16000, 512, 300)
    with pytest.raises(ParameterError, match="n_fft=15"):
        resolve_fft_size(16000, 15)
    with pytest.raises(ParameterError, match="n_samples=-1"):
        frame_count(-1, 16000)


@pytest.mark.parametrize("n", [1, 2047, 2048, 3071, 3072, 48_000 + 17])
def test_the_spectrogram_frames_as_the_streaming_splitter_does(n, rng):
    """``spectrogram_db`` frames with numpy (the report's child loads no compiled loops): the same spectra to the bit."""
    audio = rng.standard_normal(n).astype(np.float32)
    splitter = FrameSplitter(1, n_fft=2048, hop_length=1024, padded=False)
    spectra = np.concatenate([splitter.push(audio[:, np.newaxis]), splitter.finish()], axis=1)[0]
    density = np.square(np.abs(spectra)) / (48_000 * np.square(hann_window(2048)).sum())
    density[:, 1:1024] *= 2
    np.testing.assert_array_equal(spectrogram_db(audio, 48_000, 2048), 10 * np.log10(np.maximum(density, 1e-30)).T)
