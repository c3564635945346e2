"""Loudness as people hear it: integrated loudness (EBU R128 / ITU-R BS.1770) and true peak, measured by ffmpeg."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from destatic.errors import BadInputError
from destatic.media import _ffmpeg

__all__ = ["Loudness", "measure_loudness"]

SILENCE_LUFS = -70.0
"""What ebur128 reports for audio with no block above its absolute gate."""


@dataclass(frozen=True)
class Loudness:
    """What :func:`measure_loudness` found.

    Attributes
    ----------
    integrated_lufs : float or None
        Gated integrated loudness, LUFS (to 0.1); None for silence.
    true_peak_dbtp : float or None
        The highest inter-sample peak, dBTP (4x oversampled); None for digital silence.
    """

    integrated_lufs: float | None
    true_peak_dbtp: float | None


def _value(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if math.isfinite(value) else None


def measure_loudness(path: os.PathLike[str] | str) -> Loudness:
    """Measure the integrated loudness and true peak of the audio in `path` (ffmpeg's ``ebur128`` filter, one pass).

    Raises
    ------
    destatic.errors.BadInputError
        ffmpeg could not read it, or printed no summary.
    destatic.errors.TransientError
        ffmpeg killed, or an I/O error.
    """
    args = [*_ffmpeg.base_args(loglevel="info"), *_ffmpeg.input_args(path), "-map", "0:a:0",
            "-af", "ebur128=peak=true:framelog=quiet", "-f", "null", "-"]
    text = _ffmpeg.decode_text(_ffmpeg.run(args, source=path).stderr)
    summary = text.rpartition("Summary:")[2]
    if not summary:
        raise BadInputError(path, "ffmpeg measured no loudness")
    integrated = _value(r"I:\s+(-?[\d.]+|-inf)\s+LUFS", summary)
    peak = _value(r"Peak:\s+(-?[\d.]+|-inf)\s+dBFS", summary)
    return Loudness(None if integrated is None or integrated <= SILENCE_LUFS else integrated, peak)
