"""Property tests over lengths, rates, channel counts and sample values."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import destatic
from destatic.dsp import METHODS, apply_gains, gain_shape, resolve_profile

RATES = st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 6000),
    channels=st.integers(1, 4),
    sample_rate=RATES,
    level=st.floats(0.0, 1.0),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**32 - 1),
)
def test_same_shape_float32_and_finite(n, channels, sample_rate, level, method, seed):
    rng = np.random.default_rng(seed)
    audio = (level * rng.uniform(-1, 1, (n, channels))).astype(np.float32)
    if channels == 1 and seed % 2:
        audio = audio[:, 0]
    out = destatic.denoise(audio, sample_rate, method=method)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert np.isfinite(out).all()


@settings(max_examples=25, deadline=None)
@given(
    sample_rate=RATES,
    channels=st.integers(1, 3),
    seconds=st.floats(0.3, 1.5),
    level=st.floats(1e-4, 0.5),
    method=st.sampled_from([m for m in METHODS if m != "seed"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_never_more_energy_in_noise_only_stretches(sample_rate, channels, seconds, level, method, seed):
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    noise = (level * rng.standard_normal((n, channels))).astype(np.float32)
    out = destatic.denoise(noise, sample_rate, method=method)
    for channel in range(channels):
        assert np.sum(out[:, channel] ** 2) <= np.sum(noise[:, channel] ** 2) * 1.0001


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5000),
    channels=st.integers(1, 8),
    sample_rate=st.sampled_from([8000, 16000, 44100, 192000]),
    block=st.integers(1, 3000),
    seed=st.integers(0, 2**32 - 1),
)
def test_unit_gain_is_identity(n, channels, sample_rate, block, seed):
    rng = np.random.default_rng(seed)
    audio = rng.uniform(-1, 1, (n, channels)).astype(np.float32)
    profile = resolve_profile(audio, sample_rate)
    ones = np.ones(gain_shape(n, profile), np.float32)
    blocks = [audio[i : i + block] for i in range(0, n, block)]
    out = np.concatenate(list(apply_gains(blocks, sample_rate, [ones], profile=profile)))
    assert out.shape == audio.shape
    assert np.max(np.abs(out - audio)) < 1e-5
