"""The voice detector (Silero VAD from its wheel) on the shared media: speech found voiced, music and ambience not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from destatic.dsp import voice
from destatic.media.audio import read_audio


def _voiced_fraction(path: Path) -> float:
    import soxr

    audio, rate = read_audio(path)
    mono = soxr.resample(audio.mean(axis=1) if audio.ndim == 2 else audio, rate, voice.RATE)
    return float(np.mean(voice.voice_probabilities(mono) >= 0.5))


@pytest.mark.parametrize("name", ["speech/sp01.wav", "speech/198-209-0000.decoded.flac", "video/bbaf2n.mpg", "pairs/noizeus/sp01_car_sn5.wav"])
def test_speech_is_found_voiced(media_dir: Path, name: str) -> None:
    assert _voiced_fraction(media_dir / name) > 0.3


@pytest.mark.parametrize("name", ["video/chaplin.mp4", "video/big_buck_bunny_0_30.webm", "video/fire2.mp4",
                                  "music/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq.ogg", "noise/CopyMachine_2.wav"])
def test_music_ambience_and_noise_are_not(media_dir: Path, name: str) -> None:
    assert _voiced_fraction(media_dir / name) < 0.01


def test_frames_and_blocks() -> None:
    rng = np.random.default_rng(3)
    audio = rng.normal(0, 0.01, voice.RATE * 40).astype(np.float32)  # more than one block of the model
    probabilities = voice.voice_probabilities(audio)
    assert probabilities.shape == (int(np.ceil(audio.size * 1.0 / (voice.FRAME_S * voice.RATE))),)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert voice.voice_probabilities(np.zeros(0, np.float32)).shape == (0,)
    with pytest.raises(ValueError):
        voice.voice_probabilities(np.zeros((2, 10), np.float32))
