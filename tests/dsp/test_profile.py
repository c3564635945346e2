"""Noise profiles recover known spectra and survive save/load."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.signal

from destatic import NoiseProfile, ParameterError, estimate_profile
from destatic.dsp import default_n_fft, profile_from_blocks

SR = 16000
N_FFT = default_n_fft(SR)


def coloured_noise(rng, n, channels=1):
    """Noise through a known low-pass filter, and its expected STFT power per bin."""
    taps = scipy.signal.firwin(31, 3000, fs=SR)
    white = rng.standard_normal((n + 30, channels))
    noise = scipy.signal.lfilter(taps, 1, white, axis=0)[30:]
    _, response = scipy.signal.freqz(taps, worN=N_FFT // 2 + 1, fs=SR, include_nyquist=True)
    window_energy = np.sum(np.hanning(N_FFT + 1)[:-1] ** 2)
    expected = np.abs(response) ** 2 * window_energy
    return noise.astype(np.float32), expected


def db_error(estimate, expected, band=slice(4, 150)):
    return 10 * np.log10(estimate[band] / expected[band])


def test_head_profile_recovers_known_spectrum(rng):
    noise, expected = coloured_noise(rng, 5 * SR, channels=2)
    profile = estimate_profile(noise, SR, mode="head", head_samples=4 * SR)
    assert profile.power.shape == (2, N_FFT // 2 + 1)
    assert profile.mode == "head" and profile.n_fft == N_FFT
    for channel in range(2):
        assert np.abs(np.median(db_error(profile.power[channel], expected))) < 0.3
        assert np.percentile(np.abs(db_error(profile.power[channel], expected)), 90) < 1.5


def test_auto_profile_finds_noise_under_speech_like_bursts(rng):
    noise, expected = coloured_noise(rng, 8 * SR)
    t = np.arange(noise.shape[0]) / SR
    bursts = (np.sin(2 * np.pi * 1.3 * t) > -0.2) * sum(
        np.sin(2 * np.pi * f * t) for f in (300, 700, 1300, 2100)
    )
    audio = noise[:, 0] + 0.5 * bursts.astype(np.float32)
    profile = estimate_profile(audio, SR)
    assert profile.mode == "auto"
    error = db_error(profile.power[0], expected)
    assert abs(np.median(error)) < 1.5


def test_segment_and_file_modes(rng):
    noise, expected = coloured_noise(rng, 3 * SR)
    speech_like = np.concatenate([np.sin(np.arange(SR) * 0.2), np.zeros(2 * SR)]).astype(np.float32)
    audio = noise[:, 0] + speech_like
    segment = estimate_profile(audio, SR, start_s=1.0, end_s=3.0)
    assert segment.mode == "segment"
    assert segment.details["start_s"] == 1.0
    assert abs(np.median(db_error(segment.power[0], expected))) < 0.5
    stereo = np.stack([audio, audio], axis=1)
    from_file = estimate_profile(stereo, SR, noise_audio=noise[:, 0])
    assert from_file.mode == "file" and from_file.channels == 2
    assert abs(np.median(db_error(from_file.power[1], expected))) < 0.5


def test_streaming_profile_equals_in_memory_and_reads_only_what_it_needs(rng):
    noise, _ = coloured_noise(rng, 4 * SR)
    blocks_read = []

    def blocks():
        for start in range(0, noise.shape[0], 1000):
            blocks_read.append(start)
            yield noise[start : start + 1000]

    streamed = profile_from_blocks(blocks(), SR, mode="head", head_samples=8192)
    assert len(blocks_read) == 9
    assert streamed == estimate_profile(noise, SR, mode="head")


def test_save_load_round_trip(tmp_path, rng):
    noise, _ = coloured_noise(rng, SR, channels=2)
    profile = estimate_profile(noise, SR, start_s=0.1, end_s=0.9)
    path = tmp_path / "profile.npz"
    profile.save(path)
    assert NoiseProfile.load(path) == profile
    buffer = io.BytesIO()
    profile.save(buffer)
    buffer.seek(0)
    loaded = NoiseProfile.load(buffer)
    assert loaded == profile
    assert not loaded.power.flags.writeable


def test_load_refuses_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ParameterError, match="not a destatic noise profile"):
        NoiseProfile.load(path)


def test_bad_profile_arguments(rng):
    audio = rng.standard_normal(SR).astype(np.float32)
    with pytest.raises(ParameterError, match="mode='loud'"):
        estimate_profile(audio, SR, mode="loud")
    with pytest.raises(ParameterError, match="end_s=0.5"):
        estimate_profile(audio, SR, start_s=1.0, end_s=0.5)
    with pytest.raises(ParameterError, match="noise_audio"):
        estimate_profile(audio, SR, mode="file")
    with pytest.raises(ParameterError, match="no samples"):
        estimate_profile(audio, SR, start_s=5.0, end_s=6.0)
    with pytest.raises(ParameterError, match="3 channels"):
        estimate_profile(np.zeros((SR, 2), np.float32), SR, noise_audio=np.zeros((SR, 3)))
