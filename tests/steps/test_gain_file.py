"""The subtract and inverse steps: the gains file they share, and that it gives what the DSP core gives in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic import dsp, steps
from destatic.settings import NoiseSettings, SuppressionSettings


@pytest.mark.parametrize(("n_jobs", "method", "stored"), [(1, None, np.float16), (2, None, np.float16), (2, "seed", np.float32)])
def test_gains_file_is_channels_major_and_reads_back_as_computed(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, n_jobs: int, method: str | None, stored: type
) -> None:
    """Bounded gains are stored as float16 (half the file), the seed method's unbounded ones as float32."""
    monkeypatch.setattr(dsp, "jobs_for_length", lambda *args: n_jobs)
    rate = 16000
    t = np.arange(3 * rate) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.05 * rng.standard_normal(t.size)], axis=1).astype(np.float32)
    audio_wav = tmp_path / "stereo.wav"
    sf.write(audio_wav, stereo, rate, subtype="FLOAT")
    audio = steps.AudioFile(path=audio_wav, sample_rate=rate, channels=2, frames=stereo.shape[0])
    noise = steps.profile.run(audio, tmp_path / "profile.npz", NoiseSettings().request(method), method=method)
    gains = steps.subtract.run(audio, noise, tmp_path / "gains.npy", method, SuppressionSettings(method=method).options())

    expected = np.concatenate(list(dsp.compute_gains([stereo], rate, noise.profile, method=method)), axis=1).astype(stored)
    assert np.load(gains.path).dtype == stored and gains.dtype == np.dtype(stored).name
    assert gains.shape == expected.shape
    np.testing.assert_array_equal(np.load(gains.path), expected)
    for group in (slice(0, 2), slice(1, 2)):
        chunks = list(dsp.read_gain_rows(gains.path, group, frames_per_chunk=7))
        assert all(chunk.shape[0] == group.stop - group.start and chunk.flags.c_contiguous for chunk in chunks)
        np.testing.assert_array_equal(np.concatenate(chunks, axis=1), expected[group])
    assert not np.array_equal(expected[0], expected[1])

    cleaned = steps.inverse.run(audio, gains, noise, tmp_path / "cleaned.wav")
    in_memory = np.concatenate(list(dsp.apply_gains([stereo], rate, [expected], profile=noise.profile)))
    np.testing.assert_array_equal(sf.read(cleaned.path, dtype="float32")[0], in_memory)
    assert (cleaned.sample_rate, cleaned.channels, cleaned.frames) == (rate, 2, stereo.shape[0])
