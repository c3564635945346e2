"""Hypothesis over the DSP public API: what ``tests/dsp/test_properties.py`` does not already cover.

That file checks shape, dtype and finiteness of :func:`destatic.denoise` on
uniform noise, the energy bound for every method but ``seed`` on Gaussian
noise, and unit gains. Here: integer and extreme float inputs, NaN/inf refused
with the documented error, streaming in arbitrary blocks, the gains' range and
count, noise profiles in every mode, and the energy bound on coloured, hummed
and very quiet or very loud noise with up to 8 channels.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import destatic
from destatic.dsp import METHODS, compute_gains, denoise_stream, estimate_profile, gain_shape, profile_from_blocks
from destatic.errors import ParameterError

RATES = st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000])
TRACKED = [m for m in METHODS if m != "seed"]
FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _noise(kind: str, n: int, channels: int, sample_rate: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """Steady noise of a given colour: white, pink-ish (low-passed), mains hum with harmonics over hiss."""
    white = rng.standard_normal((n, channels))
    if kind == "low":
        b, a = scipy.signal.butter(2, 0.1)
        white = scipy.signal.lfilter(b, a, white, axis=0) * 3
    elif kind == "hum":
        t = np.arange(n)[:, None] / sample_rate
        white = 0.1 * white + sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in range(1, 6))
    return (level * white / max(np.abs(white).max(), 1e-12)).astype(np.float32)


@FUZZ
@given(
    n=st.integers(1, 4000),
    channels=st.integers(1, 3),
    dtype=st.sampled_from(["int16", "int32", "uint8", "float64"]),
    sample_rate=RATES,
    seed=st.integers(0, 2**32 - 1),
)
def test_integer_and_double_input_keep_shape_and_stay_finite(n, channels, dtype, sample_rate, seed):
    rng = np.random.default_rng(seed)
    if dtype == "float64":
        audio = rng.uniform(-1, 1, (n, channels))
    else:
        info = np.iinfo(dtype)
        audio = rng.integers(info.min, info.max, (n, channels), dtype=dtype, endpoint=True)
    out = destatic.denoise(audio, sample_rate)
    assert out.shape == audio.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out).max(initial=0) <= 4.0


@FUZZ
@given(
    n=st.integers(1, 3000),
    value=st.sampled_from([1.0, -1.0, 1e-38, 1e-45, 1e3, -1e6]),
    method=st.sampled_from(METHODS),
    sample_rate=RATES,
)
def test_constant_and_extreme_values_stay_finite(n, value, method, sample_rate):
    audio = np.full(n, value, np.float32)
    out = destatic.denoise(audio, sample_rate, method=method)
    assert out.shape == audio.shape and np.isfinite(out).all()


@pytest.mark.parametrize("value", [2e6, 1e18, 1e20, 3e38])
def test_huge_finite_samples_give_finite_output_or_a_clear_refusal(value):
    failures = []
    for method in METHODS:
        for n in (1, 5000):
            audio = np.full(n, value, np.float32)
            audio[::2] *= -1
            try:
                out = destatic.denoise(audio, 16000, method=method)
            except ParameterError as error:
                if "audio" not in str(error):
                    failures.append((method, n, f"unclear refusal: {error}"))
            except Exception as error:  # anything but the documented refusal is a crash
                failures.append((method, n, f"{type(error).__name__}: {error}"))
            else:
                if not np.isfinite(out).all():
                    failures.append((method, n, "non-finite output"))
    assert failures == []


@FUZZ
@given(
    n=st.integers(1, 3000),
    bad=st.sampled_from([np.nan, np.inf, -np.inf, 1e39]),
    where=st.floats(0, 1, exclude_max=True),
    sample_rate=RATES,
)
def test_nan_inf_and_overflow_are_refused_with_parameter_error(n, bad, where, sample_rate):
    audio = np.zeros(n, np.float64)
    audio[int(where * n)] = bad
    with pytest.raises(ParameterError, match="NaN or infinite"):
        destatic.denoise(audio, sample_rate)


@FUZZ
@given(
    n=st.integers(1, 20000),
    channels=st.integers(1, 4),
    sample_rate=RATES,
    blocks=st.lists(st.integers(1, 5000), min_size=1, max_size=12),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**32 - 1),
)
def test_streaming_in_any_blocks_equals_one_call(n, channels, sample_rate, blocks, method, seed):
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal((n, channels))).astype(np.float32)
    whole = destatic.denoise(audio, sample_rate, method=method)
    edges = np.cumsum([0, *blocks])
    pieces = [audio[a:b] for a, b in zip(edges[:-1], edges[1:]) if a < n] + ([audio[edges[-1]:]] if edges[-1] < n else [])
    profile = destatic.dsp.resolve_profile(audio, sample_rate, method=method)
    streamed = list(denoise_stream(pieces, sample_rate, noise=profile, method=method))
    joined = np.concatenate(streamed) if streamed else np.zeros((0, channels), np.float32)
    assert joined.shape == (n, channels) and np.isfinite(joined).all()
    assert np.allclose(joined, whole, atol=1e-4)


@FUZZ
@given(
    n=st.integers(1, 20000),
    channels=st.integers(1, 4),
    sample_rate=RATES,
    block=st.integers(1, 6000),
    method=st.sampled_from(TRACKED),
    max_reduction_db=st.one_of(st.none(), st.floats(1, 80)),
    seed=st.integers(0, 2**32 - 1),
)
def test_gains_count_and_range(n, channels, sample_rate, block, method, max_reduction_db, seed):
    rng = np.random.default_rng(seed)
    audio = (0.05 * rng.standard_normal((n, channels))).astype(np.float32)
    profile = destatic.dsp.resolve_profile(audio, sample_rate, method=method)
    options = {} if max_reduction_db is None else {"max_reduction_db": max_reduction_db}
    chunks = list(compute_gains((audio[i : i + block] for i in range(0, n, block)), sample_rate, profile, method=method, **options))
    expected = gain_shape(n, profile)
    frames = sum(chunk.shape[1] for chunk in chunks)
    assert frames == expected[1]
    for chunk in chunks:
        assert chunk.shape[0] == expected[0] and chunk.shape[2] == expected[2] and np.isfinite(chunk).all()
        assert chunk.min(initial=0) >= -1 - 1e-6 and chunk.max(initial=0) <= 1 + 1e-6


@FUZZ
@given(
    seconds=st.floats(0.05, 2.0),
    channels=st.integers(1, 4),
    sample_rate=RATES,
    mode=st.sampled_from(["auto", "head", "segment", "file"]),
    block=st.integers(1, 8000),
    level=st.floats(1e-6, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_profiles_in_every_mode_are_finite_and_positive(seconds, channels, sample_rate, mode, block, level, seed):
    rng = np.random.default_rng(seed)
    n = max(int(seconds * sample_rate), 1)
    audio = (level * rng.standard_normal((n, channels))).astype(np.float32)
    options = {"start_s": 0.0, "end_s": seconds / 2} if mode == "segment" else {}
    assume(mode != "segment" or seconds / 2 * sample_rate >= 1)
    from_blocks = profile_from_blocks((audio[i : i + block] for i in range(0, n, block)), sample_rate, mode=mode, **options)
    if mode == "file":
        in_memory = estimate_profile(audio, sample_rate, noise_audio=audio, mode="file")
    else:
        in_memory = estimate_profile(audio, sample_rate, mode=mode, **options)
    for profile in (from_blocks, in_memory):
        power = np.asarray(profile.power)
        assert profile.channels == channels and profile.sample_rate == sample_rate
        assert np.isfinite(power).all() and (power >= 0).all()
    assert np.allclose(np.asarray(from_blocks.power), np.asarray(in_memory.power), rtol=1e-3, atol=1e-12)


@FUZZ
@given(
    kind=st.sampled_from(["white", "low", "hum"]),
    channels=st.integers(1, 8),
    sample_rate=RATES,
    seconds=st.floats(0.3, 1.2),
    level=st.sampled_from([1e-5, 1e-3, 0.1, 1.0, 8.0]),
    method=st.sampled_from(TRACKED),
    seed=st.integers(0, 2**32 - 1),
)
def test_never_more_energy_out_than_in_on_coloured_noise(kind, channels, sample_rate, seconds, level, method, seed):
    rng = np.random.default_rng(seed)
    noise = _noise(kind, int(seconds * sample_rate), channels, sample_rate, level, rng)
    out = destatic.denoise(noise, sample_rate, method=method)
    assert out.shape == noise.shape and np.isfinite(out).all()
    energy_in = np.sum(noise.astype(np.float64) ** 2, axis=0)
    energy_out = np.sum(out.astype(np.float64) ** 2, axis=0)
    assert (energy_out <= energy_in * 1.0001 + 1e-12).all(), (energy_out / np.maximum(energy_in, 1e-30)).tolist()
