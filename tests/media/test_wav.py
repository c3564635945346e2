"""The float WAVs the steps write between them (media.float_wav_writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from destatic import media


def test_float_wav_writer_keeps_every_sample_and_writes_no_peak_chunk(tmp_path: Path) -> None:
    audio = np.random.default_rng(7).standard_normal((48_000, 2)).astype(np.float32)
    path = tmp_path / "cleaned.wav"
    with media.float_wav_writer(path, 48_000, 2) as out:
        for start in range(0, len(audio), 10_000):
            out.write(audio[start : start + 10_000])

    read, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 48_000
    np.testing.assert_array_equal(read, audio)
    assert b"PEAK" not in path.read_bytes()[:512]
    (stream,) = media.probe(path).streams
    assert (stream.codec, stream.channels, stream.sample_rate) == ("pcm_f32le", 2, 48_000)


def test_soundfile_alone_writes_the_peak_chunk(tmp_path: Path) -> None:
    """The check above can fail: libsndfile adds the chunk unless told not to."""
    path = tmp_path / "plain.wav"
    sf.write(path, np.zeros((100, 2), np.float32), 48_000, subtype="FLOAT")
    assert b"PEAK" in path.read_bytes()[:512]
