"""``method='seed'`` reproduces the tutorial's librosa recipe exactly."""

from __future__ import annotations

import numpy as np
import pytest

import destatic

librosa = pytest.importorskip("librosa")


def tutorial(y: np.ndarray) -> np.ndarray:
    """The tutorial's steps, as plain librosa (mono, before its int16 cast)."""
    spectrum = librosa.stft(y)
    noise_magnitude = np.mean(np.abs(librosa.stft(y[:8192])), axis=1)
    reduced = np.abs(spectrum) - noise_magnitude[:, np.newaxis]
    reduced_spectrum = reduced * np.exp(1j * np.angle(spectrum))
    return librosa.istft(reduced_spectrum, length=len(y))


@pytest.mark.parametrize("n", [8192, 20_000, 44_101])
def test_seed_matches_librosa_tutorial(n, rng):
    t = np.arange(n) / 22050
    y = (0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.3)).astype(
        np.float32
    )
    expected = tutorial(y)
    result = destatic.denoise(y, 22050, method="seed")
    assert result.shape == y.shape
    assert np.max(np.abs(result - expected)) < 1e-5 * max(1.0, np.max(np.abs(expected)))


def test_seed_keeps_the_unrectified_defect(rng):
    """Where noise exceeds the bin, the seed flips its phase instead of zeroing it."""
    y = (0.1 * rng.standard_normal(30_000)).astype(np.float32)
    gains = np.concatenate(
        list(
            destatic.dsp.compute_gains(
                [y],
                22050,
                destatic.dsp.resolve_profile(y, 22050, method="seed"),
                method="seed",
            )
        ),
        axis=1,
    )
    assert (gains < 0).mean() > 0.2


def test_seed_takes_no_options(rng):
    y = rng.standard_normal(10_000).astype(np.float32)
    with pytest.raises(destatic.ParameterError, match="seed"):
        destatic.denoise(y, 22050, method="seed", max_reduction_db=10)


def test_framing_for_names_the_seed_framing_and_derives_the_rest(rng):
    assert destatic.dsp.framing_for("seed") == destatic.dsp.SEED_FRAMING
    assert destatic.dsp.framing_for(None) == {} == destatic.dsp.framing_for("wiener")
    audio = rng.standard_normal(20_000).astype(np.float32)
    profile = destatic.dsp.estimate_profile(
        audio, 22_050, mode="head", head_samples=8192, **destatic.dsp.framing_for("seed")
    )
    assert (profile.n_fft, profile.hop_length, profile.centered) == (2048, 512, True)
