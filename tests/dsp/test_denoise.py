"""The denoising API: equivalent paths, edges, and real recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import destatic
from destatic import ParameterError
from destatic.dsp import (
    METHODS,
    apply_gains,
    compute_gains,
    denoise_stream,
    gain_dtype,
    gain_shape,
    resolve_profile,
)

SR = 16000


def speech_like(rng, seconds=3.0, sample_rate=SR, noise=0.05, lead_s=1.0):
    """Noise throughout, with harmonic 'vowels' after a noise-only lead-in."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = (np.sin(2 * np.pi * 2 * t) > 0) * (t > lead_s)
    voice = envelope * sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    clean = (0.3 * voice).astype(np.float32)
    return clean + (noise * rng.standard_normal(t.size)).astype(np.float32), clean


def sisdr(reference, estimate):
    scale = np.dot(estimate, reference) / np.dot(reference, reference)
    target = scale * reference
    return 10 * np.log10(np.sum(target**2) / np.sum((estimate - target) ** 2))


def concat(blocks, channels):
    blocks = list(blocks)
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_shape_and_improves_sisdr(method, rng):
    noisy, clean = speech_like(rng)
    noise = None if method == "seed" else (0.0, 1.0)
    result = destatic.denoise(noisy, SR, noise=noise, method=method)
    assert result.shape == noisy.shape and result.dtype == np.float32
    speech = slice(SR, None)
    assert sisdr(clean[speech], result[speech]) > sisdr(clean[speech], noisy[speech]) + 1.0


@pytest.mark.parametrize("method", METHODS)
def test_gains_stored_as_gain_dtype_change_the_output_inaudibly(method, rng):
    """float16 for bounded gains: each gain within 5e-4 of its float32 value, the output within -60 dB."""
    if method == "seed":
        assert gain_dtype(method) == np.float32, "the seed method's gains are unbounded"
        return
    noisy, _ = speech_like(rng)
    profile = resolve_profile(noisy, SR, noise=(0.0, 1.0), method=method)
    gains = np.concatenate(list(compute_gains([noisy], SR, profile, method=method)), axis=1)
    stored = gains.astype(gain_dtype(method))
    assert gain_dtype(method) == np.float16 and np.abs(gains).max() <= 1
    assert np.abs(stored.astype(np.float32) - gains).max() <= 2**-11
    exact = concat(apply_gains([noisy], SR, [gains], profile=profile), 1)
    rounded = concat(apply_gains([noisy], SR, [stored], profile=profile), 1)
    error_db = 10 * np.log10(np.sum((rounded - exact) ** 2) / np.sum(exact**2))
    assert error_db < -60


def test_two_step_path_equals_one_pass_and_denoise(rng):
    noisy, _ = speech_like(rng)
    stereo = np.stack([noisy, np.roll(noisy, 100)], axis=1)
    profile = resolve_profile(stereo, SR)
    whole = destatic.denoise(stereo, SR, noise=profile)
    gains = np.zeros(gain_shape(stereo.shape[0], profile), np.float32)
    position = 0
    blocks = [stereo[i : i + 3000] for i in range(0, stereo.shape[0], 3000)]
    for chunk in compute_gains(blocks, SR, profile):
        gains[:, position : position + chunk.shape[1]] = chunk
        position += chunk.shape[1]
    assert position == gains.shape[1]
    slices = (gains[:, i : i + 50] for i in range(0, gains.shape[1], 50))
    two_step = concat(apply_gains(blocks, SR, slices, profile=profile), 2)
    one_pass = concat(denoise_stream(iter(blocks[::1]), SR, noise=profile), 2)
    assert two_step.shape == stereo.shape
    np.testing.assert_allclose(two_step, whole, atol=1e-6)
    np.testing.assert_allclose(one_pass, whole, atol=1e-6)
    half = apply_gains(blocks, SR, [gains.astype(np.float16)], profile=profile)
    assert np.max(np.abs(concat(half, 2) - whole)) < 1e-3


def test_stream_with_automatic_profile_equals_denoise(rng):
    noisy, _ = speech_like(rng, seconds=10.0)
    blocks = (noisy[i : i + 7000] for i in range(0, noisy.size, 7000))
    streamed = concat(denoise_stream(blocks, SR), 1)[:, 0]
    np.testing.assert_array_equal(streamed, destatic.denoise(noisy, SR))


def test_gains_do_not_depend_on_block_size(rng):
    noisy, _ = speech_like(rng)
    profile = resolve_profile(noisy, SR)
    by_block = {
        size: np.concatenate(
            list(compute_gains((noisy[i : i + size] for i in range(0, noisy.size, size)), SR, profile)),
            axis=1,
        )
        for size in (257, 4096, noisy.size)
    }
    np.testing.assert_array_equal(by_block[257], by_block[noisy.size])
    np.testing.assert_array_equal(by_block[4096], by_block[noisy.size])


def test_residue_is_what_was_removed(rng):
    noisy, _ = speech_like(rng)
    kept = destatic.denoise(noisy, SR, noise=(0.0, 1.0))
    removed = destatic.denoise(noisy, SR, noise=(0.0, 1.0), residue=True)
    np.testing.assert_allclose(kept + removed, noisy, atol=1e-5)


def test_max_reduction_limits_attenuation(rng):
    noise = (0.1 * rng.standard_normal(3 * SR)).astype(np.float32)
    reductions = {}
    for limit in (3.0, 6.0, 12.0):
        out = destatic.denoise(noise, SR, noise=(0.0, 1.0), max_reduction_db=limit)
        reductions[limit] = 10 * np.log10(np.mean(noise**2) / np.mean(out**2))
        assert reductions[limit] < limit + 0.2
    assert reductions[3.0] > 2.5 and reductions[6.0] > 5.0
    assert reductions[12.0] > reductions[6.0] + 3


def test_sensitivity_makes_it_more_aggressive(rng):
    noisy, _ = speech_like(rng)
    gentle = destatic.denoise(noisy, SR, noise=(0.0, 1.0), sensitivity_db=-6)
    strong = destatic.denoise(noisy, SR, noise=(0.0, 1.0), sensitivity_db=6)
    assert np.sum(strong**2) < np.sum(gentle**2)


def test_silence_gives_silence():
    for method in METHODS:
        out = destatic.denoise(np.zeros((5000, 2), np.float32), SR, method=method)
        assert np.all(out == 0)


@pytest.mark.parametrize("n", [0, 1, 100, 511])
def test_input_shorter_than_one_fft(n, rng):
    audio = rng.standard_normal(n).astype(np.float32)
    out = destatic.denoise(audio, SR)
    assert out.shape == (n,) and np.isfinite(out).all()


def test_dc_offset_and_clipped_full_scale(rng):
    noisy, _ = speech_like(rng)
    offset = destatic.denoise(noisy + 0.5, SR, noise=(0.0, 1.0))
    assert np.isfinite(offset).all()
    assert np.mean(offset[:SR] ** 2) < np.mean((noisy[:SR] + 0.5) ** 2)
    clipped = np.clip(noisy * 20, -1, 1)
    out = destatic.denoise(clipped, SR)
    assert np.isfinite(out).all() and np.max(np.abs(out)) < 1.5


def test_integer_input_is_scaled(rng):
    noisy, _ = speech_like(rng)
    as_int = np.round(noisy * 32767 / np.max(np.abs(noisy))).astype(np.int16)
    from_int = destatic.denoise(as_int, SR, noise=(0.0, 1.0))
    from_float = destatic.denoise(as_int.astype(np.float32) / 32768, SR, noise=(0.0, 1.0))
    np.testing.assert_allclose(from_int, from_float, atol=1e-6)
    unsigned = destatic.denoise(np.full(3000, 128, np.uint8), SR)
    assert np.all(unsigned == 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(bad, rng):
    audio = rng.standard_normal(4000).astype(np.float32)
    audio[123] = bad
    with pytest.raises(ParameterError, match="NaN or infinite"):
        destatic.denoise(audio, SR)


def test_bad_arguments_are_refused(rng):
    audio = rng.standard_normal(4000).astype(np.float32)
    with pytest.raises(ParameterError, match="method='magic'"):
        destatic.denoise(audio, SR, method="magic")
    with pytest.raises(ParameterError, match="unknown option"):
        destatic.denoise(audio, SR, strength=3)
    with pytest.raises(ParameterError, match="max_reduction_db=-3"):
        destatic.denoise(audio, SR, max_reduction_db=-3)
    with pytest.raises(ParameterError, match="sample_rate=4000"):
        destatic.denoise(audio, 4000)
    with pytest.raises(ParameterError, match="shape"):
        destatic.denoise(np.zeros((2, 3, 4)), SR)
    with pytest.raises(ParameterError, match="channels"):
        destatic.denoise(np.zeros((2, 4000)), SR)
    profile = resolve_profile(audio, SR)
    with pytest.raises(ParameterError, match="48000 Hz"):
        destatic.denoise(audio, 48000, noise=profile)
    with pytest.raises(ParameterError, match="ran out"):
        list(apply_gains([audio], SR, [np.ones((1, 3, profile.bins))], profile=profile))


def test_auto_on_real_noizeus_pair(media_dir):
    noisy, sample_rate = sf.read(media_dir / "pairs/noizeus/sp01_car_sn5.wav", dtype="float32")
    clean, _ = sf.read(media_dir / "speech/sp01.wav", dtype="float32")
    out = destatic.denoise(noisy, sample_rate)
    assert out.shape == noisy.shape
    assert sisdr(clean, out) > sisdr(clean, noisy) + 2.0
    lag = np.argmax(np.correlate(out[2000:6000], clean[2000 - 50 : 6000 + 50], mode="valid")) - 50
    assert lag == 0


def test_steady_hum_is_removed_and_a_tone_above_it_kept(rng):
    t = np.arange(4 * SR) / SR
    hum = 0.1 * sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in range(1, 10))
    tone = 0.05 * np.sin(2 * np.pi * 1000 * t) * (t >= 2.0)
    noisy = (hum + tone + 1e-3 * rng.standard_normal(t.size)).astype(np.float32)
    out = destatic.denoise(noisy, SR, noise=(0.0, 1.0))
    hum_only = slice(SR + SR // 2, 2 * SR - 1024)
    assert 10 * np.log10(np.mean(noisy[hum_only] ** 2) / np.mean(out[hum_only] ** 2)) > 20
    kept = slice(2 * SR + 1024, 4 * SR - 1024)
    assert abs(10 * np.log10(np.mean(out[kept] ** 2) / np.mean(tone[kept] ** 2))) < 1.0


def all_gains(audio, profile, **options):
    return np.concatenate(list(compute_gains([audio], SR, profile, **options)), axis=1)


def test_smoothing_options_calm_the_gains_in_noise(rng):
    noise = (0.05 * rng.standard_normal(4 * SR)).astype(np.float32)
    profile = resolve_profile(noise, SR, (0.0, 1.0))
    plain = all_gains(noise, profile)[0, 80:, 10:200]
    for option in ({"freq_smoothing_hz": 200.0}, {"time_smoothing_ms": 100.0}):
        smoothed = all_gains(noise, profile, **option)[0, 80:, 10:200]
        assert np.std(np.diff(smoothed, axis=0)) < 0.8 * np.std(np.diff(plain, axis=0))


def test_tracking_follows_noise_that_gets_louder(rng):
    n = 12 * SR
    level = np.where(np.arange(n) < 2 * SR, 0.02, 0.08).astype(np.float32)
    noisy = level * rng.standard_normal(n).astype(np.float32)
    late = slice(8 * SR, None)
    kept = {
        track: destatic.denoise(noisy, SR, noise=(0.0, 1.0), track_noise=track)[late]
        for track in (True, False)
    }
    assert np.mean(kept[True] ** 2) < 0.5 * np.mean(kept[False] ** 2)


@pytest.mark.slow  # compiles the loops from nothing: about a minute here
def test_the_first_call_in_a_fresh_environment_says_it_compiles_once(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = "import numpy as np, destatic; destatic.denoise(np.zeros(16000, np.float32) + 1e-3, 16000); destatic.denoise(np.ones(800) * 1e-3, 16000)"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert first.stderr.count("compiling the DSP loops for this machine, once") == 1, first.stderr
    assert "compiling" not in again.stderr, again.stderr
