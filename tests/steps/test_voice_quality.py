"""The speech-quality part of the report step: which frames are scored, and when there is no score."""

from __future__ import annotations

import numpy as np

from destatic.steps import quality


def test_voice_spans_are_the_frames_over_the_floor_bounded_and_spread() -> None:
    frames = 2000  # 100 s of 50 ms frames; voice in every other second
    before = np.full(frames, 1e-4)
    voiced = (np.arange(frames) // 20) % 2 == 1
    before[voiced] = 1e-2
    quiet = ~voiced
    spans = quality.voice_spans(before, quiet, 0.05, seconds=9.01)
    assert 9.0 <= sum(end - start for start, end in spans) <= 10.0
    assert spans[0][0] >= 1.0 and spans[-1][1] > 90.0, "spread over the file"
    assert all(voiced[int(round(start / 0.05)):int(round(end / 0.05))].all() for start, end in spans)


def test_no_voice_no_score() -> None:
    flat = np.full(400, 1e-4)
    assert quality.voice_spans(flat, flat > 0, 0.05, seconds=9.01) == []
    assert not quality.needs_listening({"note": "not scored: no voice found"})
    assert "no voice" in quality.describe({"note": "not scored: no voice found"})
    assert quality.needs_listening({"output": {"ovrl": quality.NEEDS_LISTENING_BELOW - 0.1}})
