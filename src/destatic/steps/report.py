"""The report step: what a file's cleaning did, measured and drawn, beside the encode (cached, ``plots-<key>.json``).

:func:`run` picks the excerpt the listening report plays
(:func:`choose_excerpt`), estimates the noise reduction
(:func:`noise_reduction_db`), scores the speech quality
(:mod:`destatic.steps.quality`), plots the noise profile and the spectrograms
(:mod:`destatic.steps.plots`) and cuts a video's previews. The pages people
read are written from its record after the run
(:mod:`destatic.steps.report_page`).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf

from destatic import dsp, media
from destatic.steps import listening, plots, quality
from destatic.steps.records import AudioFile, ExtractedAudio, Plots, ProfiledNoise

__all__ = ["EXCERPT_S", "QUIET_FRACTION", "choose_excerpt", "noise_reduction_db", "run", "warm_up"]

LEVEL_FRAME_S = 0.05
QUIET_FRACTION = 0.2
EXCERPT_S = 15.0
"""Seconds of the excerpt the listening report plays, and the spectrograms show."""
EXCERPT_CEILING_DB = 30.0
"""A frame counts at most this far above the noise floor (one loud bang does not pick the excerpt)."""


def _frame_energies(wav: Path) -> np.ndarray:
    """Mean power of consecutive frames of LEVEL_FRAME_S, all channels, read block by block."""
    with sf.SoundFile(wav) as handle:
        frame = max(1, round(LEVEL_FRAME_S * handle.samplerate))
        energies = []
        for block in handle.blocks(blocksize=frame * 256, dtype="float32", always_2d=True):
            usable = len(block) // frame * frame
            if usable:
                rows = block[:usable].reshape(-1, frame * block.shape[1])
                energies.append(np.einsum("ij,ij->i", rows, rows).astype(np.float64) / rows.shape[1])  # float32 sums: 1e-6
        return np.concatenate(energies) if energies else np.zeros(0)


def _quiet(before: np.ndarray) -> np.ndarray:
    """The frames taken as noise only: the quietest QUIET_FRACTION of the input's."""
    return before <= np.quantile(before, QUIET_FRACTION)


def _paired_energies(before_wav: Path, after_wav: Path) -> tuple[np.ndarray, np.ndarray]:
    before, after = _frame_energies(before_wav), _frame_energies(after_wav)
    count = min(len(before), len(after))
    return before[:count], after[:count]


def noise_reduction_db(
    before_wav: Path, after_wav: Path, *, energies: tuple[np.ndarray, np.ndarray] | None = None
) -> float | None:
    """Estimated noise reduction: power ratio, in dB, over the quietest frames of the input.

    The quietest QUIET_FRACTION of 50 ms frames of the input are taken as noise
    only; the result is how much quieter the same frames are after cleaning.
    None when the input is too short or silent. `energies`: the files' 50 ms frame
    energies, when the caller has read them already.
    """
    before, after = energies if energies is not None else _paired_energies(before_wav, after_wav)
    if len(before) == 0:
        return None
    quiet = _quiet(before)
    noise_before, noise_after = before[quiet].sum(), after[quiet].sum()
    if noise_before <= 0:
        return None
    return float(10 * math.log10(noise_before / max(noise_after, 1e-30)))


def choose_excerpt(
    before_wav: Path, after_wav: Path, *, seconds: float = EXCERPT_S, energies: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[float, float]:
    """The stretch of `seconds` with the most speech over the noise: ``(start, end)`` in seconds.

    Each 50 ms frame scores the level of the cleaned audio above the input's
    noise floor (the mean power of its quiet frames, as in
    :func:`noise_reduction_db`), in dB, from 0 to EXCERPT_CEILING_DB; the
    window with the highest total wins (the earliest of equals). A file no
    longer than `seconds` is its own excerpt; a silent one starts at 0.
    `energies` as for :func:`noise_reduction_db`.
    """
    before, after = energies if energies is not None else _paired_energies(before_wav, after_wav)
    duration = sf.info(before_wav).duration
    window = round(seconds / LEVEL_FRAME_S)
    if duration <= seconds or len(before) <= window:
        return 0.0, duration
    floor = max(float(before[_quiet(before)].mean()), 1e-12)
    score = np.clip(10 * np.log10(np.maximum(after, 1e-30) / floor), 0.0, EXCERPT_CEILING_DB)
    totals = np.convolve(score, np.ones(window), mode="valid")
    start = int(np.argmax(totals)) * LEVEL_FRAME_S
    return start, min(duration, start + seconds)


def warm_up(fallback: Path) -> None:
    """Load in the report's child, while the first steps run, what its step needs: the plots'
    libraries and kernels (:func:`destatic.steps.plots.warm_up`, `fallback` as there) and the scoring's
    sessions (:func:`destatic.steps.quality.warm_up`).

    The step runs at the lowest priority beside the encoders, so whatever it
    loads there waits for them and lengthens the run's tail.
    """
    plots.warm_up(fallback)
    quality.warm_up()


def run(
    audio: ExtractedAudio, noise: ProfiledNoise, cleaned: AudioFile, target: Path, *, previews: bool = True, source: Path | None = None
) -> Plots:
    """The report step: plots, the estimated reduction, and the excerpt the listening report plays.

    Picks the excerpt (:func:`choose_excerpt`), plots the noise profile and the
    spectrograms of the excerpt, writes the excerpt before and after cleaning
    and, for a video, preview clips of it. Done at the lowest priority
    (:func:`destatic.steps.plots.at_lowest_priority`), beside the encode.

    Parameters
    ----------
    audio, cleaned : AudioFile
        The audio before and after cleaning (`audio` as extracted: its probe tells a video).
    noise : ProfiledNoise
        Its noise profile.
    target : Path
        ``plots-<key>.json``, written last (atomically) with the record; the other
        files go beside it as ``plots-<key>-profile.png``, ``-spectrograms.png``,
        ``-before.flac``, ``-after.flac`` (and ``-before.mp4``, ``-after.mp4``).
    previews : bool
        Whether to cut a video's preview clips (not for an audio-only output: its players say it all, and the
        clips cost more than the rest of the report).
    source : Path or None
        Where the input is now, for the previews (None: where the extract step probed it).
    """
    profile_png = target.with_name(f"{target.stem}-profile.png")
    spectrogram_png = target.with_name(f"{target.stem}-spectrograms.png")

    def draw() -> Plots:
        energies = _paired_energies(audio.path, cleaned.path)  # both files read once, for the excerpt and the reduction
        start, end = choose_excerpt(audio.path, cleaned.path, energies=energies)
        excerpts = {label: listening.write_excerpt(wav, target.with_name(f"{target.stem}-{label}.flac"), start=start, end=end)
                    for label, wav in (("before", audio.path), ("after", cleaned.path))}
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="destatic-previews") as cutting:
            # moviepy cuts the previews (its ffmpeg on another core) while this thread draws and scores
            cut = cutting.submit(listening.previews, audio, excerpts, start, end, target.with_name(target.stem), video=source) if previews else None
            with dsp.caching_other_packages(target.parent / ".numba"):  # librosa's cached functions, decorated as it is imported
                spectrograms = plots.plot_spectrograms(audio.path, cleaned.path, spectrogram_png, start=start, seconds=end - start)
            before, _ = energies
            score = quality.score_voice(audio.path, cleaned.path, before, _quiet(before) if len(before) else before > 0, LEVEL_FRAME_S)
            clips, note = cut.result() if cut is not None else ({}, None)
        return Plots(
            path=target,
            profile_png=profile_png,
            spectrogram_png=spectrogram_png,
            profile_uri=plots.plot_profile(noise.profile, profile_png),
            spectrogram_uri=spectrograms,
            reduction_db=noise_reduction_db(audio.path, cleaned.path, energies=energies),
            excerpt=(start, end),
            before_excerpt=excerpts["before"],
            after_excerpt=excerpts["after"],
            before_clip=clips.get("before"),
            after_clip=clips.get("after"),
            clip_note=note,
            quality=score,
        )

    drawn = plots.at_lowest_priority(draw)
    record = {name: str(value) if isinstance(value, Path) else value for name, value in vars(drawn).items() if name != "path"}
    with media.atomic_output(target) as partial:
        partial.write_text(json.dumps(record), encoding="utf-8")
    return drawn
