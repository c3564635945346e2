"""The memory benchmark's fresh-process probe on a short real file."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

import common
import memory


@pytest.mark.slow  # about 25 s; .ci/run runs it
def test_fresh_processes_denoise_a_file_and_report_their_own_peak(media_dir: Path, tmp_path: Path) -> None:
    source = common.write_speech_noise_wav(tmp_path / "in.wav", 0.05)
    for mode in ("streaming", "in-memory"):
        target = tmp_path / f"{mode}.wav"
        figures = memory.measure(mode, source, target, None)
        assert 20 < figures["baseline_mb"] <= figures["peak_mb"] < 1000
        assert sf.info(target).frames == sf.info(source).frames == 144000
        assert sf.info(target).channels == 2
