"""Steady tones (mains hum): found in the noise clip, subtracted coherently, followed when they drift."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import destatic
from destatic.dsp import NoiseProfile, resolve_profile
from destatic.dsp.profile import find_hum
from destatic.dsp.tones import (
    SpectrumScratch,
    ToneCanceller,
    blackman_harris,
    clip_spectrum,
    find_peaks,
    find_tones,
    fit_tones,
    harmonic_family,
    hum_in_segments,
    mains_series,
    refined_bins,
)

SR = 16000


def hum(seconds, *, sample_rate=SR, f0=50.0, wander_hz=0.0, harmonics=10, seed=0):
    """Mains-like hum: harmonics 1..10 of ``f0`` at 1/k, random phases; ``f0`` may wander slowly."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    fundamental = f0 + wander_hz * np.sin(2 * np.pi * t / 8)
    phase = 2 * np.pi * np.cumsum(fundamental) / sample_rate
    offsets = np.random.default_rng(seed).uniform(0, 2 * np.pi, harmonics)
    signal = sum(np.sin(k * phase + offsets[k - 1]) / k for k in range(1, harmonics + 1))
    return (0.1 * signal / np.sqrt(np.mean(signal**2))).astype(np.float32)


def level_db(x):
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


def test_the_harmonics_of_mains_hum_are_found_precisely(rng):
    noise = hum(1.0) + 0.003 * rng.standard_normal(SR).astype(np.float32)
    found = find_tones(noise[:, np.newaxis], SR)
    np.testing.assert_allclose(found, 50.0 * np.arange(1, 11), atol=0.05)


def test_no_tones_in_broadband_noise_or_a_lone_whine(rng):
    white = rng.standard_normal((SR, 1)).astype(np.float32)
    assert find_tones(white, SR).size == 0
    t = np.arange(SR) / SR
    whine = (np.sin(2 * np.pi * 626.0 * t) + 0.01 * rng.standard_normal(SR))[:, np.newaxis]
    assert find_tones(whine, SR).size == 0
    assert harmonic_family(np.array([626.0, 5640.0])).size == 0
    np.testing.assert_array_equal(harmonic_family(np.array([60.0, 120.2, 180.0, 333.0])), [60.0, 120.2, 180.0])


def test_cancelling_does_not_depend_on_block_size(rng):
    stereo = np.stack([hum(3.0), 0.5 * hum(3.0, seed=1)], axis=1)
    stereo += 0.01 * rng.standard_normal(stereo.shape).astype(np.float32)
    frequencies = find_tones(stereo[:SR], SR)
    amplitudes = fit_tones(stereo[:SR], SR, frequencies)
    results = []
    for size in (stereo.shape[0], 4096, 777, 1):
        canceller = ToneCanceller(frequencies, amplitudes, SR)
        part = stereo if size > 1 else stereo[:2000]
        results.append(np.concatenate([canceller.process(part[i : i + size])[0] for i in range(0, part.shape[0], size)]))
    for result in results[1:3]:
        np.testing.assert_array_equal(result, results[0])
    np.testing.assert_array_equal(results[3], results[0][:2000])


@pytest.mark.parametrize("wander_hz", [0.0, 0.05])
def test_hum_is_cancelled_and_followed_when_it_drifts(wander_hz, rng):
    tone = hum(20.0, wander_hz=wander_hz)
    floor = 0.001 * rng.standard_normal(tone.size).astype(np.float32)
    noisy = (tone + floor)[:, np.newaxis]
    frequencies = find_tones(noisy[:SR], SR)
    canceller = ToneCanceller(frequencies, fit_tones(noisy[:SR], SR, frequencies), SR)
    cleaned, removed = canceller.process(noisy)
    np.testing.assert_allclose(cleaned + removed, noisy, atol=1e-6)
    late = slice(10 * SR, None)
    assert level_db(cleaned[late]) < level_db(noisy[late]) - 25


def test_profile_holds_the_tones_and_measures_the_noise_without_them(rng):
    noise = 0.003 * rng.standard_normal(2 * SR).astype(np.float32)
    profile = resolve_profile(hum(2.0) + noise, SR, (0.0, 1.0))
    bare = resolve_profile(noise, SR, (0.0, 1.0))
    np.testing.assert_allclose(profile.tones, 50.0 * np.arange(1, 11), atol=0.05)
    assert profile.tone_amplitudes.shape == (1, 10)
    hum_bins = np.round(profile.tones / (SR / profile.n_fft)).astype(int)
    assert np.all(profile.power_db()[0, hum_bins] < bare.power_db()[0, hum_bins] + 6)
    assert bare.tones.size == 0


def test_hum_under_speech_is_removed_far_better_than_by_gains_alone(rng):
    t = np.arange(6 * SR) / SR
    voice = ((t > 1) * (np.sin(2 * np.pi * 2 * t) > 0) * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8)))
    clean = (0.2 * voice).astype(np.float32)
    noisy = clean + hum(6.0) + 0.003 * rng.standard_normal(t.size).astype(np.float32)
    profile = resolve_profile(noisy, SR, (0.0, 1.0))
    without_tones = dataclasses.replace(profile, tones=np.zeros(0), tone_amplitudes=None)
    speech = slice(SR, None)

    def error_db(noise):
        return level_db((destatic.denoise(noisy, SR, noise=noise) - clean)[speech])

    assert error_db(profile) < error_db(without_tones) - 10
    removed = destatic.denoise(noisy, SR, noise=profile, residue=True)
    np.testing.assert_allclose(destatic.denoise(noisy, SR, noise=profile) + removed, noisy, atol=1e-5)


def test_tones_survive_save_and_load(tmp_path, rng):
    noisy = hum(2.0) + 0.003 * rng.standard_normal(2 * SR).astype(np.float32)
    profile = resolve_profile(noisy, SR, (0.0, 1.0))
    profile.save(tmp_path / "hum.npz")
    assert NoiseProfile.load(tmp_path / "hum.npz") == profile


def test_a_separate_noise_recording_gives_tones_without_phase(rng):
    recording = hum(2.0, seed=3) + 0.003 * rng.standard_normal(2 * SR).astype(np.float32)
    noisy = hum(3.0) + 0.003 * rng.standard_normal(3 * SR).astype(np.float32)
    profile = resolve_profile(noisy, SR, recording)
    assert profile.tones.size == 10
    assert not profile.tone_amplitudes.any()
    late = slice(2 * SR, None)
    assert level_db(destatic.denoise(noisy, SR, noise=profile)[late]) < level_db(noisy[late]) - 20


@pytest.mark.parametrize("n", [0, 1, 2, 7, 4096, 64001])
def test_blackman_harris_is_scipys_to_the_bit(n):
    import scipy.signal

    np.testing.assert_array_equal(blackman_harris(n), scipy.signal.windows.blackmanharris(n))


def test_a_clip_spectrum_with_reused_buffers_is_the_plain_one_to_the_bit(rng):
    """Buffers carried from clip to clip, and a spectrum cut to its first bins, change no value."""
    import scipy.fft

    scratch = SpectrumScratch(24000, 2)
    for n in (24000, 24000, 1001):
        clip = rng.standard_normal((n, 2)).astype(np.float32)
        padded = 1 << int(np.ceil(np.log2(8 * n)))
        window = blackman_harris(n).astype(np.float32)
        power = sum(np.abs(scipy.fft.rfft(channel * window, padded)).astype(np.float64) ** 2 for channel in clip.T)
        plain = 10 * np.log10(power + 1e-30)
        level, hz_per_bin, per_bin = clip_spectrum(clip, SR, scratch=scratch)
        np.testing.assert_array_equal(level, plain)
        assert (hz_per_bin, per_bin) == (SR / padded, padded / n)
        np.testing.assert_array_equal(clip_spectrum(clip, SR, bins=500, scratch=scratch)[0], plain[:500])
    assert scratch.length == 24000, "a clip of another length got buffers of its own"


def test_the_float32_clip_spectrum_is_the_float64_one_within_a_twentieth_of_a_db(rng):
    """Single precision moves no level a tone search looks at: a tone 60 dB over white noise, every bin within 0.05 dB of float64
    (at most 0.021 dB measured, in the weakest bins), the tone's refined frequency within 1e-5 Hz."""
    n = 2 * SR
    t = np.arange(n) / SR
    clip = (0.001 * rng.standard_normal((n, 2)) + np.sin(2 * np.pi * 50.3 * t)[:, np.newaxis]).astype(np.float32)
    padded = 1 << int(np.ceil(np.log2(8 * n)))
    power = sum(np.abs(np.fft.rfft(channel.astype(np.float64) * blackman_harris(n), padded)) ** 2 for channel in clip.T)
    level, hz_per_bin, per_bin = clip_spectrum(clip, SR)
    exact = 10 * np.log10(power + 1e-30)
    np.testing.assert_allclose(level, exact, atol=0.05, rtol=0)
    peak = np.array([int(np.argmax(exact))])
    assert abs(refined_bins(level, peak)[0] - refined_bins(exact, peak)[0]) * hz_per_bin < 1e-5


def test_find_peaks_is_scipys_with_plateaus_heights_and_distances(rng):
    import scipy.signal

    for _ in range(200):
        n = int(rng.integers(3, 4000))
        level = np.round(rng.standard_normal(n) * rng.choice([1.0, 4.0, 50.0]))
        height = rng.standard_normal(n) * 2
        distance = int(rng.integers(1, 40))
        expected, _ = scipy.signal.find_peaks(level, height=height, distance=distance)
        np.testing.assert_array_equal(find_peaks(level, height, distance), expected)


def test_a_measured_profile_loads_no_scipy_signal():
    """Tone finding needs neither scipy.signal nor its import time (most of a fresh process's first call)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, destatic\n"
        "audio = (0.1 * np.random.default_rng(0).standard_normal((32000, 2))).astype(np.float32)\n"
        "destatic.denoise(audio, 16000, noise=(0.0, 1.0))\n"
        "print('scipy.signal' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# Hum without a noise-only stretch (auto): found persisting through the file, on real speech and music.


def speech_file(media_dir, name="198-209-0000"):
    import soundfile as sf

    speech, rate = sf.read(media_dir / "speech" / f"{name}.decoded.flac", dtype="float32")
    return speech, rate


def drifting_hum(frames, sample_rate, f0, harmonics, *, seed=0):
    """Harmonics 1..n of ``f0`` at 1/k, the fundamental drifting 0.1 Hz either side over 20 s, unit power."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 + 0.1 * np.sin(2 * np.pi * t / 20 + rng.uniform(0, 2 * np.pi))) / sample_rate
    signal = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, harmonics + 1))
    return (signal / np.sqrt(np.mean(signal**2))).astype(np.float32)


def with_hum(speech, rate, f0, harmonics, snr_db):
    noise = drifting_hum(speech.size, rate, f0, harmonics)
    gain = np.sqrt(np.mean(speech**2) / 10 ** (snr_db / 10))
    return speech + gain * noise


@pytest.mark.parametrize(("f0", "harmonics"), [(50.0, 4), (60.0, 6)])
def test_drifting_hum_under_speech_from_the_first_sample_is_found(media_dir, f0, harmonics):
    speech, rate = speech_file(media_dir)
    noisy = with_hum(speech, rate, f0, harmonics, 5.0)
    found = find_hum(lambda start, stop: noisy[start:stop, np.newaxis], noisy.size, rate)
    assert found is not None
    frequencies, amplitudes = found
    orders = np.round(frequencies / f0)
    assert orders.size >= 3 and orders[0] == 1
    assert np.all(np.abs(frequencies - orders * f0) <= 0.15 * orders)
    assert amplitudes.shape == (1, frequencies.size)
    profile = resolve_profile(noisy, rate)
    assert profile.mode == "auto"
    np.testing.assert_array_equal(profile.tones, frequencies)
    assert resolve_profile(noisy, rate, hum="off").tones.size == 0


def test_no_hum_in_speech_without_it(media_dir):
    for name in ("198-209-0000", "3436-172162-0000", "5703-47212-0000"):
        speech, rate = speech_file(media_dir, name)
        assert find_hum(lambda start, stop: speech[start:stop, np.newaxis], speech.size, rate) is None


@pytest.mark.parametrize(("video", "start_s", "end_s"), [("chaplin.mp4", 0.0, None), ("big_buck_bunny_0_30.webm", 0.0, None)])
def test_no_hum_in_music_and_ambience(media_dir, video, start_s, end_s):
    from destatic.media import read_audio

    audio, rate = read_audio(media_dir / "video" / video)
    clip = audio[round(start_s * rate) : None if end_s is None else round(end_s * rate)]
    assert find_hum(lambda start, stop: clip[start:stop], clip.shape[0], rate) is None
    assert hum_in_segments([], rate).size == 0


def test_a_note_on_the_grid_or_a_steady_comb_is_not_hum():
    assert mains_series(np.array([245.0, 490.0, 735.0]), 50.0)[1].tolist() == [5, 10, 15]
    rate, seconds = 16000, 12
    t = np.arange(seconds * rate) / rate
    note = sum(np.sin(2 * np.pi * 245.0 * k * t) / k for k in range(1, 6)).astype(np.float32)[:, np.newaxis]
    comb = sum(np.sin(2 * np.pi * 300.0 * k * t) / k for k in range(1, 6)).astype(np.float32)[:, np.newaxis]
    for steady in (note, comb):
        noisy = steady + 0.01 * np.random.default_rng(1).standard_normal(steady.shape).astype(np.float32)
        assert find_hum(lambda start, stop: noisy[start:stop], noisy.shape[0], rate) is None


def test_auto_mode_cancels_hum_under_speech_far_better_than_gains_alone(media_dir):
    speech, rate = speech_file(media_dir)
    speech = speech[: 10 * rate]
    noisy = with_hum(speech, rate, 50.0, 4, 0.0)

    def sdr(output):
        target = speech * (np.dot(output, speech) / np.dot(speech, speech))
        return 10 * np.log10(np.sum(target**2) / np.sum((output - target) ** 2))

    before = sdr(destatic.denoise(noisy, rate, method="logmmse", hum="off"))
    after = sdr(destatic.denoise(noisy, rate, method="logmmse"))
    assert after > before + 5.0
