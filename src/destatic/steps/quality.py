"""Speech quality of a file's input and output: DNSMOS P.835 (:mod:`destatic.dsp.quality`) on their voice frames.

Part of the report step: it reuses the report's 50 ms frame energies. Voice
frames are those of the input where the voice detector
(:mod:`destatic.dsp.voice`) finds speech, looked for where the input stands
over its noise floor, so that music, ambience and noise are not scored as
bad speech, and every method's output of a file is scored on the same
frames. Up to one window (9.01 s) of them, taken in 1 s stretches spread over
the file, is read from the input and from the output at the same times, and
scored. A file with less than :data:`MIN_VOICE_S` of speech is not scored.

Only the output's score is shown as a figure to act on: measured on the
benchmark, a file's output score ranks outputs as PESQ does, while the change
from input to output does not (``benchmarks/speech_quality.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from destatic.dsp import quality as dnsmos
from destatic.dsp import voice
from destatic.steps.listening import read_mono

__all__ = ["LOUD_OVER_FLOOR_DB", "MIN_VOICE_S", "NEEDS_LISTENING_BELOW", "describe", "needs_listening", "score_voice", "voice_spans", "warm_up"]

LOUD_OVER_FLOOR_DB = 3.0
"""The voice detector looks for speech around the input's 50 ms frames this far over its noise floor."""
VOICE_PROBABILITY = 0.5
"""A frame the voice detector gives at least this probability of speech is voice."""
MIN_VOICE_S = 0.5
"""Less speech than this: no score (the celesta of ``media/music`` has 0.13 s, a 2 s sentence at 0 dB SNR 1.1 s)."""
SEARCH_S = 60.0
"""Seconds of the input the voice detector examines at most (about 0.2 s of CPU)."""
SEARCH_BLOCK_S = 4.0
"""The voice detector examines the input in blocks of this many seconds."""
STRETCH_S = 1.0
"""The voice frames scored are read in stretches of this many seconds, spread over the file."""
NEEDS_LISTENING_BELOW = 2.05
"""An output whose overall score (OVRL) is below this is flagged for a person to listen to (chosen on the benchmark's tuning half)."""


def _evenly_spaced(count: int, wanted: int) -> np.ndarray:
    """Indices of at most `wanted` of `count` items, spread evenly from the first to the last."""
    return np.unique(np.linspace(0, count - 1, min(wanted, count)).round()).astype(int)


def _spread(frames: np.ndarray, frame_s: float, *, seconds: float, stretch_s: float) -> list[tuple[float, float]]:
    """Up to `seconds` of the sorted frame indices `frames`, in stretches of `stretch_s` spread over them, as ``(start, end)`` spans."""
    per_stretch = max(1, round(stretch_s / frame_s))
    stretches = [frames[start:start + per_stretch] for start in range(0, len(frames), per_stretch)]
    wanted = max(1, int(np.ceil(seconds / stretch_s)))
    chosen = [stretches[i] for i in _evenly_spaced(len(stretches), wanted)]
    spans: list[tuple[float, float]] = []
    for group in chosen:
        for run in np.split(group, np.flatnonzero(np.diff(group) > 1) + 1):  # contiguous frames, one span each
            start, end = run[0] * frame_s, (run[-1] + 1) * frame_s
            if spans and abs(spans[-1][1] - start) < 1e-9:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return spans


def _voiced_frames(wav: Path, loud: np.ndarray, frame_s: float) -> np.ndarray:
    """The frames of `frame_s` seconds of `wav` that the voice detector finds speech in, looking around the `loud` ones.

    Up to :data:`SEARCH_S` seconds are examined, in blocks of
    :data:`SEARCH_BLOCK_S` that hold loud frames, spread over the file: the
    cost stays bounded, and each block gives the detector some context.
    """
    per_block = max(1, round(SEARCH_BLOCK_S / frame_s))
    blocks = np.unique(loud // per_block)
    blocks = blocks[_evenly_spaced(len(blocks), int(SEARCH_S / SEARCH_BLOCK_S))]
    found = []
    for block in blocks:
        audio = _audio_at(wav, [(block * per_block * frame_s, (block + 1) * per_block * frame_s)], voice.RATE)
        speech = voice.voice_probabilities(audio) >= VOICE_PROBABILITY
        centres = (np.arange(per_block) + 0.5) * frame_s  # each frame of the grid takes the detector's frame at its centre
        inside = centres < len(audio) / voice.RATE
        found.append(block * per_block + np.flatnonzero(speech[(centres[inside] / voice.FRAME_S).astype(int)]))
    return np.concatenate(found) if found else np.zeros(0, int)


def voice_spans(before_wav: Path, before: np.ndarray, quiet: np.ndarray, frame_s: float, *, seconds: float) -> list[tuple[float, float]]:
    """Where to score: up to `seconds` of the input's speech as ``(start, end)`` spans in seconds, or [] if too little.

    Speech is what the voice detector (:mod:`destatic.dsp.voice`) finds in
    the input where it stands :data:`LOUD_OVER_FLOOR_DB` over its floor;
    music, ambience and noise are left out. The frames are chosen on the
    input alone, so that outputs of the same file (other methods, other
    settings) are scored on the same stretches of it.

    Parameters
    ----------
    before_wav : Path
        The input's audio.
    before : ndarray
        Mean power of the input's frames of `frame_s` seconds.
    quiet : ndarray of bool
        The input's frames taken as noise only (its floor).
    """
    if len(before) == 0 or not quiet.any():
        return []
    floor = max(float(before[quiet].mean()), 1e-12)
    loud = np.flatnonzero(before >= floor * 10 ** (LOUD_OVER_FLOOR_DB / 10))
    if not len(loud):
        return []
    voiced = _voiced_frames(before_wav, loud, frame_s)
    if len(voiced) * frame_s < MIN_VOICE_S:
        return []
    return _spread(voiced, frame_s, seconds=seconds, stretch_s=STRETCH_S)


def _audio_at(wav: Path, spans: list[tuple[float, float]], rate: int) -> np.ndarray:
    """The spans of `wav`, channels averaged, at `rate` Hz, one after the other, clipped to -1..1."""
    import soxr

    pieces = []
    for start, end in spans:
        audio, native = read_mono(wav, start, end - start)
        pieces.append(soxr.resample(audio, native, rate) if native != rate and len(audio) else audio)
    return np.clip(np.concatenate(pieces), -1.0, 1.0)


def warm_up() -> None:
    """Load the voice detector's and DNSMOS's sessions now, where they are installed (for the report's child)."""
    if dnsmos.dnsmos_available():
        voice.voice_available()


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
    if not voice.voice_available():
        return {"note": "not scored: the voice detector's model does not load (onnxruntime missing, or a build of destatic without its models/)"}
    spans = voice_spans(before_wav, before, quiet, frame_s, seconds=dnsmos.MAX_WINDOWS * dnsmos.WINDOW_SAMPLES / dnsmos.RATE)
    if not spans:
        return {"note": f"not scored: no voice found (less than {MIN_VOICE_S:g} s of speech)"}
    record: dict[str, Any] = {"voice_s": round(sum(end - start for start, end in spans), 2)}
    for label, wav in (("input", before_wav), ("output", after_wav)):
        scores = dnsmos.speech_quality(_audio_at(wav, spans, dnsmos.RATE))
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
