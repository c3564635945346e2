"""The speech-quality part of the report step: which frames are scored, and when there is no score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from destatic.media.audio import extract_audio, read_audio
from destatic.steps import quality
from destatic.steps.report import LEVEL_FRAME_S, _paired_energies, _quiet


def _record(media: Path, tmp_path: Path) -> dict:
    wav = tmp_path / "input.wav"
    extract_audio(media, wav)
    before, _ = _paired_energies(wav, wav)
    return quality.score_voice(wav, wav, before, _quiet(before), LEVEL_FRAME_S)


@pytest.mark.parametrize("name", ["video/chaplin.mp4", "video/big_buck_bunny_0_30.webm"])
def test_music_gets_no_voice_and_no_score(media_dir: Path, tmp_path: Path, name: str) -> None:
    record = _record(media_dir / name, tmp_path)
    assert "output" not in record and "no voice found" in record["note"], record
    assert not quality.needs_listening(record)
    assert "no voice" in quality.describe(record)


@pytest.mark.parametrize("name", ["pairs/noizeus/sp01_car_sn5.wav", "video/pwij3p.mpg"])
def test_speech_gets_a_score_on_its_voice(media_dir: Path, tmp_path: Path, name: str) -> None:
    record = _record(media_dir / name, tmp_path)
    assert 1.0 <= record["output"]["ovrl"] <= 5.0 and record["output"] == record["input"], record
    assert quality.MIN_VOICE_S <= record["voice_s"] <= 9.1


def test_the_scored_spans_are_speech_bounded_and_spread(media_dir: Path, tmp_path: Path) -> None:
    """Speech in every other 4 s block of 100 s, music (the piano) in the others: only speech is scored, spread over the file."""
    speech, rate = read_audio(media_dir / "speech" / "3436-172162-0000.decoded.flac")
    piano, piano_rate = read_audio(media_dir / "video" / "chaplin.mp4")
    piano = soxr.resample(piano.mean(axis=1), piano_rate, rate)
    block = 4 * rate
    sources = [piano, speech.reshape(-1)]
    mix = np.concatenate([sources[i % 2][(i // 2) * rate % (len(sources[i % 2]) - block):][:block] for i in range(25)])
    wav = tmp_path / "mix.wav"
    sf.write(wav, (mix + np.random.default_rng(0).normal(0, 0.003, mix.size)).astype(np.float32), rate)
    before, _ = _paired_energies(wav, wav)
    spans = quality.voice_spans(wav, before, _quiet(before), LEVEL_FRAME_S, seconds=9.01)
    assert 8.0 <= sum(end - start for start, end in spans) <= 10.0
    assert spans[0][0] < 20.0 and spans[-1][1] > 70.0, "spread over the file"
    assert not [(start, end) for start, end in spans if (start // 4) % 2 == 0 or ((end - 1e-6) // 4) % 2 == 0]


def test_no_sound_no_score() -> None:
    flat = np.full(400, 1e-4)
    assert quality.voice_spans(Path("unused.wav"), flat, flat > 0, 0.05, seconds=9.01) == []
    assert not quality.needs_listening({"note": "not scored: no voice found"})
    assert quality.needs_listening({"output": {"ovrl": quality.NEEDS_LISTENING_BELOW - 0.1}})
