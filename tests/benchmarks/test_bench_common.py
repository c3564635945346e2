"""The benchmarks' shared helpers: mixing, lag, SI-SDR, scoring and the real peers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import common


def test_mix_at_snr_hits_the_requested_snr_after_the_lead_in(rng: np.random.Generator) -> None:
    speech = rng.standard_normal(8000) * np.hanning(8000)
    noise = rng.standard_normal(2000 + 8000) * 3.0
    noisy, clean = common.mix_at_snr(speech, noise, 5.0, lead_in=2000)
    assert len(noisy) == len(clean) == 10000
    assert np.all(clean[:2000] == 0)
    residual = noisy - clean
    snr = 10 * np.log10(np.mean(clean[2000:] ** 2) / np.mean(residual[2000:] ** 2))
    assert snr == pytest.approx(5.0, abs=1e-9)
    assert np.max(np.abs(noisy)) <= common.PEAK_LIMIT + 1e-12


def test_mix_at_snr_refuses_a_noise_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="len\\(noise\\)=10"):
        common.mix_at_snr(np.ones(8), np.ones(10), 0.0, lead_in=1)


def test_estimate_lag_finds_a_known_delay_and_advance_undoes_it(rng: np.random.Generator) -> None:
    reference = rng.standard_normal(4000)
    for delay in (0, 37, -12):
        delayed = np.roll(reference, delay)
        lag = common.estimate_lag(reference, delayed + 0.5 * rng.standard_normal(4000), max_lag=100)
        assert lag == delay
    restored = common.advance(np.concatenate([np.zeros(37), reference]), 37, len(reference))
    np.testing.assert_array_equal(restored, reference)


def test_si_sdr_is_scale_invariant_and_matches_a_known_noise_level(rng: np.random.Generator) -> None:
    reference = rng.standard_normal(16000)
    noise = rng.standard_normal(16000)
    noise -= reference * np.dot(noise, reference) / np.dot(reference, reference)
    noise *= np.sqrt(np.sum(reference**2) / np.sum(noise**2)) * 10 ** (-10 / 20)
    assert common.si_sdr(reference, reference + noise) == pytest.approx(10.0, abs=0.05)
    assert common.si_sdr(reference, 0.1 * (reference + noise)) == pytest.approx(10.0, abs=0.05)


def test_synthetic_noises_have_unit_power_and_the_hum_sits_on_50_hz(rng: np.random.Generator) -> None:
    rate = 8000
    hum = common.synthetic_noise("hum", rate, rate, rng=rng)
    assert np.mean(hum**2) == pytest.approx(1.0)
    spectrum = np.abs(np.fft.rfft(hum)) ** 2
    harmonics = np.arange(50, 501, 50)
    assert spectrum[harmonics].sum() / spectrum.sum() > 0.999
    assert np.mean(common.synthetic_noise("white", rate, rate, rng=rng) ** 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kind='violet'"):
        common.synthetic_noise("violet", 10, rate, rng=rng)


@pytest.mark.parametrize(("kind", "slope_db"), [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_coloured_noises_fall_by_their_slope_per_octave(kind: str, slope_db: float, rng: np.random.Generator) -> None:
    rate = 16000
    noise = common.synthetic_noise(kind, 4 * rate, rate, rng=rng)
    assert np.mean(noise**2) == pytest.approx(1.0)
    power = np.abs(np.fft.rfft(noise)) ** 2
    frequencies = np.fft.rfftfreq(len(noise), 1 / rate)
    octave = lambda low: power[(frequencies >= low) & (frequencies < 2 * low)].mean()  # noqa: E731
    measured = 10 * np.log10(octave(1000.0) / octave(500.0))
    assert measured == pytest.approx(slope_db, abs=0.5)


def test_fan_noise_is_broadband_with_blade_tones(rng: np.random.Generator) -> None:
    rate = 16000
    fan = common.synthetic_noise("fan", 4 * rate, rate, rng=rng)
    power = np.abs(np.fft.rfft(fan)) ** 2
    frequencies = np.fft.rfftfreq(len(fan), 1 / rate)
    low, high = common.FAN_BLADE_HZ
    band = (frequencies >= low) & (frequencies <= high)
    blade = frequencies[band][np.argmax(power[band])]
    tone_share = sum(power[np.abs(frequencies - k * blade) < 1].sum() for k in range(1, common.FAN_HARMONICS + 1)) / power.sum()
    assert tone_share == pytest.approx(1 / (1 + 10 ** (-common.FAN_TONE_DB / 10)), abs=0.05)
    assert power[frequencies > 2000].sum() / power.sum() > 0.05


def test_score_ranks_clean_above_noisy_speech(media_dir: Path, rng: np.random.Generator) -> None:
    clean, rate = common.load_mono(media_dir / "speech" / "sp01.wav")
    noisy = clean + 0.05 * rng.standard_normal(len(clean))
    perfect, degraded = common.score(clean, clean, rate), common.score(clean, noisy, rate)
    assert perfect["pesq"] > 4.0 and perfect["stoi"] > 0.99 and perfect["si_sdr"] > 60
    assert degraded["pesq"] < perfect["pesq"] - 1 and degraded["stoi"] < perfect["stoi"]
    assert degraded["pesq_failed"] == 0.0


def test_silent_output_scores_the_bottom_of_the_pesq_scale(media_dir: Path) -> None:
    clean, rate = common.load_mono(media_dir / "speech" / "sp01.wav")
    scores = common.score(clean, np.zeros_like(clean), rate)
    assert scores["pesq"] == 1.0 and scores["pesq_failed"] == 1.0
    assert scores["si_sdr"] == common.SI_SDR_FLOOR_DB


def test_afftdn_output_keeps_the_length_and_comes_late(media_dir: Path, rng: np.random.Generator) -> None:
    clean, rate = common.load_mono(media_dir / "speech" / "sp01.wav")
    noisy = clean + 0.02 * rng.standard_normal(len(clean))
    output = common.run_afftdn(noisy, rate)
    assert output.shape == noisy.shape
    lag = common.estimate_lag(clean, output, max_lag=rate // 10)
    assert 0 < lag <= rate // 20


def test_sox_noisered_is_aligned_and_reduces_the_lead_in(media_dir: Path, rng: np.random.Generator) -> None:
    if common.sox_exe() is None:
        pytest.skip("SoX is not installed (apt-get install sox)")
    speech, rate = common.load_mono(media_dir / "speech" / "sp01.wav")
    noisy, clean = common.mix_at_snr(speech, rng.standard_normal(rate + len(speech)), 10.0, lead_in=rate)
    output = common.run_noisered(noisy, rate, profile_seconds=(0.0, 1.0))
    assert common.estimate_lag(clean, output, max_lag=rate // 10) == 0
    assert np.mean(output[: rate // 2] ** 2) < 0.1 * np.mean(noisy[: rate // 2] ** 2)


def test_speech_noise_blocks_cover_the_duration_with_distinct_channels(media_dir: Path) -> None:
    blocks = list(common.speech_noise_blocks(0.05, sample_rate=16000, channels=2, block_seconds=1.0))
    audio = np.concatenate(blocks)
    assert audio.shape == (48000, 2) and audio.dtype == np.float32
    assert [len(b) for b in blocks] == [16000, 16000, 16000]
    assert not np.allclose(audio[:, 0], audio[:, 1])
    assert np.max(np.abs(audio)) < 1.0
