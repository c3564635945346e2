"""DNSMOS P.835 as destatic runs it: the wheel's model, its scale, and how it ranks clean over noisy speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic.dsp import quality


def _at_16k(path: Path) -> np.ndarray:
    import soxr

    audio, rate = sf.read(path, dtype="float32")
    return soxr.resample(audio, rate, quality.RATE)


def test_clean_speech_scores_above_the_same_speech_in_noise_as_speechmos_scores_it(media_dir: Path) -> None:
    import speechmos.dnsmos

    clean = _at_16k(media_dir / "speech" / "sp01.wav")
    noisy = np.clip(_at_16k(media_dir / "pairs" / "noizeus" / "sp01_car_sn5.wav"), -1, 1)
    mine = {name: quality.speech_quality(audio) for name, audio in (("clean", clean), ("noisy", noisy))}
    assert mine["clean"].ovrl > mine["noisy"].ovrl + 1.0 and mine["clean"].bak > mine["noisy"].bak + 1.5
    for name, audio in (("clean", clean), ("noisy", noisy)):
        theirs = speechmos.dnsmos.run(audio, quality.RATE)
        assert mine[name].ovrl == pytest.approx(theirs["ovrl_mos"], abs=0.05)  # they hop 1 s, repeat differently
        assert mine[name].sig == pytest.approx(theirs["sig_mos"], abs=0.15)


def test_the_windows_are_bounded_whatever_the_length() -> None:
    assert quality.window_starts(100) == [0]
    assert quality.window_starts(quality.WINDOW_SAMPLES * 50, windows=3) == [0, 24 * quality.WINDOW_SAMPLES + quality.WINDOW_SAMPLES // 2, 49 * quality.WINDOW_SAMPLES]
    long = np.random.default_rng(0).normal(0, 0.05, quality.WINDOW_SAMPLES * 4).astype(np.float32)
    assert quality.speech_quality(long).windows == quality.MAX_WINDOWS
    with pytest.raises(ValueError):
        quality.speech_quality(np.zeros(0, np.float32))

