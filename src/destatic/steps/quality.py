"""Speech quality of a file's input and output: DNSMOS P.835 (:mod:`destatic.dsp.quality`) on their voice frames.

Part of the report step: it reuses the report's 50 ms frame energies. Voice
frames are those where the input stands :data:`VOICE_OVER_FLOOR_DB` over its
own noise floor (any sound that loud counts: music too), so that every
method's output of a file is scored on the same frames. Up to one window
(9.01 s) of them, taken in 1 s stretches spread over the file, is read from
the input and from the output at the same times, and scored. A file with
less than :data:`MIN_VOICE_S` of such frames is not scored.

Only the output's score is shown as a figure to act on: measured on the
benchmark, a file's output score ranks outputs as PESQ does, while the change
from input to output does not (``benchmarks/speech_quality.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from destatic.dsp import quality as dnsmos
from destatic.steps.listening import read_mono

__all__ = ["MIN_VOICE_S", "NEEDS_LISTENING_BELOW", "VOICE_OVER_FLOOR_DB", "describe", "needs_listening", "score_voice", "voice_spans"]

VOICE_OVER_FLOOR_DB = 3.0
"""A 50 ms frame of the input this far over its noise floor counts as voice."""
MIN_VOICE_S = 0.5
"""Less voice than this: no score."""
STRETCH_S = 1.0
"""The voice frames scored are read in stretches of this many seconds, spread over the file."""
NEEDS_LISTENING_BELOW = 2.4
"""An output whose overall score (OVRL) is below this is flagged for a person to listen to (chosen on the benchmark's tuning half)."""


def voice_spans(before: np.ndarray, quiet: np.ndarray, frame_s: float, *, seconds: float) -> list[tuple[float, float]]:
    """Where to score: up to `seconds` of voice frames as ``(start, end)`` spans in seconds, or [] if too little voice.

    The frames are chosen on the input alone: outputs of the same file (other
    methods, other settings) are then scored on the same stretches of it.

    Parameters
    ----------
    before : ndarray
        Mean power of the input's frames of `frame_s` seconds.
    quiet : ndarray of bool
        The input's frames taken as noise only (its floor).
    """
    if len(before) == 0 or not quiet.any():
        return []
    floor = max(float(before[quiet].mean()), 1e-12)
    voiced = np.flatnonzero(before >= floor * 10 ** (VOICE_OVER_FLOOR_DB / 10))
    if len(voiced) * frame_s < MIN_VOICE_S:
        return []
    per_stretch = max(1, round(STRETCH_S / frame_s))
    stretches = [voiced[start:start + per_stretch] for start in range(0, len(voiced), per_stretch)]
    wanted = max(1, int(np.ceil(seconds / STRETCH_S)))
    chosen = [stretches[int(i)] for i in np.unique(np.linspace(0, len(stretches) - 1, min(wanted, len(stretches))).round())]
    spans: list[tuple[float, float]] = []
    for frames in chosen:
        for run in np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1):  # contiguous frames, one span each
            start, end = run[0] * frame_s, (run[-1] + 1) * frame_s
            if spans and abs(spans[-1][1] - start) < 1e-9:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return spans


def _voice_audio(wav: Path, spans: list[tuple[float, float]]) -> np.ndarray:
    """The spans of `wav`, channels averaged, at the model's rate, one after the other."""
    import soxr

    pieces = []
    for start, end in spans:
        audio, rate = read_mono(wav, start, end - start)
        pieces.append(soxr.resample(audio, rate, dnsmos.RATE) if rate != dnsmos.RATE else audio)
    return np.clip(np.concatenate(pieces), -1.0, 1.0)


def score_voice(before_wav: Path, after_wav: Path, before: np.ndarray, quiet: np.ndarray, frame_s: float) -> dict[str, Any]:
    """DNSMOS P.835 of the input and the output on the same voice frames, as a JSON-able record.

    Returns
    -------
    dict
        ``{"input": {sig, bak, ovrl}, "output": {...}, "voice_s": seconds scored, "windows": n}``;
        ``{"note": why not}`` when there is too little voice or the model is not installed.
    """
    if not dnsmos.dnsmos_available():
        return {"note": "not scored: the DNSMOS model (speechmos and onnxruntime wheels) is not installed"}
    spans = voice_spans(before, quiet, frame_s, seconds=dnsmos.MAX_WINDOWS * dnsmos.WINDOW_SAMPLES / dnsmos.RATE)
    if not spans:
        return {"note": f"not scored: no voice found (less than {MIN_VOICE_S:g} s of sound over the input's noise floor)"}
    record: dict[str, Any] = {"voice_s": round(sum(end - start for start, end in spans), 2)}
    for label, wav in (("input", before_wav), ("output", after_wav)):
        scores = dnsmos.speech_quality(_voice_audio(wav, spans))
        record[label] = {"sig": round(scores.sig, 2), "bak": round(scores.bak, 2), "ovrl": round(scores.ovrl, 2)}
        record["windows"] = scores.windows
    return record


def needs_listening(record: dict[str, Any] | None) -> bool:
    """Whether a file's quality record flags its output for a person to listen to (scored, and below :data:`NEEDS_LISTENING_BELOW`)."""
    return bool(record) and "output" in record and record["output"]["ovrl"] < NEEDS_LISTENING_BELOW


def describe(record: dict[str, Any] | None) -> str:
    """One line: the output's score, the input's beside it, or why there is none."""
    if not record:
        return "speech quality: not scored"
    if "output" not in record:
        return f"speech quality: {record['note']}"
    output, given = record["output"], record["input"]
    flag = f"; below {NEEDS_LISTENING_BELOW:g}: listen to this one" if needs_listening(record) else ""
    return (f"speech quality (DNSMOS P.835, 1-5, on {record['voice_s']:g} s of voice): output OVRL {output['ovrl']:.2f} "
            f"(SIG {output['sig']:.2f}, BAK {output['bak']:.2f}); input OVRL {given['ovrl']:.2f}{flag}")
