"""Property: extraction returns exactly the samples written, for any rate, channel count and length."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from destatic import media


@settings(max_examples=15, deadline=None)
@given(
    sample_rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
    channels=st.integers(1, 8),
    frames=st.integers(1, 6000),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]),
    container=st.sampled_from([("WAV", ".wav"), ("FLAC", ".flac")]),
    seed=st.integers(0, 2**32 - 1),
)
def test_extract_is_exact(sample_rate: int, channels: int, frames: int, subtype: str, container: tuple[str, str], seed: int) -> None:
    file_format, suffix = container
    if file_format == "FLAC" and subtype == "FLOAT":
        subtype = "PCM_24"
    audio = np.random.default_rng(seed).uniform(-0.9, 0.9, size=(frames, channels)).astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / f"in{suffix}"
        sf.write(source, audio, sample_rate, subtype=subtype, format=file_format)
        expected, _ = sf.read(source, dtype="float32", always_2d=True)
        info = media.probe(source)
        stream = info.default_audio_stream
        assert (stream.sample_rate, stream.channels) == (sample_rate, channels)
        track = media.extract_audio(source, Path(scratch) / "out.wav")
        assert (track.frames, track.channels, track.sample_rate) == (frames, channels, sample_rate)
        extracted, _ = sf.read(track.path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(extracted, expected)
