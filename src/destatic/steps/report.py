"""Report: what each file's run did, for people: plots, the estimated reduction, a markdown and an HTML report.

:func:`run` is the cached report step (noise-profile plot, before/after
spectrograms, estimated noise reduction, the excerpt to listen to and, for
a video, its preview clips); :func:`write_report` then writes ``report.md``,
``report.html`` (:mod:`destatic.steps.listening`) and the ``last-run.json``
record into the file's work folder and returns the markdown for the Prefect
artifact.

The plots themselves are drawn by :mod:`destatic.steps.plots`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from destatic import dsp, media
from destatic.settings import Settings
from destatic.steps.listening import Section, players_of, render_html, write_excerpt
from destatic.steps.listening import previews as preview_clips
from destatic.steps.plots import plot_profile, plot_spectrograms
from destatic.steps.quality import describe as describe_quality
from destatic.steps.quality import score_voice
from destatic.steps.records import AudioFile, ExtractedAudio, Leveled, Plots, ProfiledNoise

__all__ = [
    "LAST_RUN",
    "REPORT_HTML",
    "choose_excerpt",
    "at_lowest_priority",
    "markdown_table",
    "noise_reduction_db",
    "run",
    "render_markdown",
    "render_report",
    "report_page",
    "settings_used",
    "write_report",
]

LAST_RUN = "last-run.json"
"""The record of a file's last run, in its work folder (read by ``destatic artifacts``)."""
REPORT_HTML = "report.html"
"""The listening report, beside ``report.md`` (:mod:`destatic.steps.listening`)."""

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


def _level(value: float | None, unit: str) -> str:
    return "silent" if value is None else f"{value:.1f} {unit}"


def _loudness_section(leveled: Leveled) -> Section:
    """The loudness step's table: the input, the cleaned audio, the result."""
    rows = [
        [label, _level(measured.integrated_lufs, "LUFS"), _level(measured.true_peak_dbtp, "dBTP")]
        for label, measured in (("input", leveled.original), ("cleaned", leveled.before), ("output", leveled.after))
    ]
    why = (f"the true-peak ceiling of {leveled.ceiling_dbtp:g} dBTP set it, so the output is quieter than asked"
           if leveled.peak_limited else "it reaches the target")
    text = (f"Target {leveled.target_lufs:g} LUFS, true peak at most {leveled.ceiling_dbtp:g} dBTP: a gain of "
            f"{leveled.gain_db:+.1f} dB for the whole file ({why}).")
    return Section("Loudness", text, ["audio", "integrated loudness", "true peak"], rows)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-style markdown table, cells escaped."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report_page(
    *,
    source: Path,
    output: Path | None,
    streams: Sequence[Mapping[str, Any]],
    profile_how: str,
    settings: Mapping[str, Any],
    step_seconds: Mapping[str, float],
    reduction_db: float | None,
    profile_uri: str | None,
    spectrogram_uri: str | None,
    files: Mapping[str, Path],
    loudness: Leveled | None = None,
    profile_png: Path | None = None,
    spectrogram_png: Path | None = None,
    spectrogram_span: tuple[float, float] | None = None,
    quality: Mapping[str, Any] | None = None,
) -> tuple[str, list[str], list[Section]]:
    """The report of one file as data: its title, its facts (one line each) and its sections.

    :func:`render_report` writes it as markdown, :func:`destatic.steps.listening.render_html` as HTML.

    Parameters
    ----------
    streams : sequence of mapping
        One row per input stream (index, type, codec, ...).
    profile_how : str
        How the noise profile was made, one line.
    settings : mapping
        ``group.field -> (value used, "set" or "default")`` (:func:`settings_used`).
    step_seconds : mapping
        Wall time of each step, s.
    files : mapping
        Label -> path of the work files worth opening.
    profile_png, spectrogram_png : Path or None
        The full-size plots (the HTML embeds them).
    spectrogram_span : tuple of float or None
        The seconds the spectrograms show.
    quality : mapping or None
        Speech quality of the input and output (:func:`destatic.steps.quality.score_voice`).
    """
    reduction = "n/a" if reduction_db is None else f"{reduction_db:.1f} dB"
    facts = [
        f"input: `{source}`",
        f"output: `{output}`" if output else "output: none",
        describe_quality(dict(quality) if quality is not None else None),
        f"estimated noise reduction: **{reduction}** (quietest {QUIET_FRACTION:.0%} of 50 ms frames)",
        f"total step time: {sum(step_seconds.values()):.2f} s",
    ]
    sections = []
    if streams:
        columns = list(dict.fromkeys(key for stream in streams for key in stream))
        sections.append(Section("Input streams", header=columns, rows=[[stream.get(c, "") for c in columns] for stream in streams]))
    sections.append(Section("Noise profile", profile_how, image=profile_uri, image_file=profile_png))
    sections.append(Section("Steps", header=["step", "seconds"], rows=[[s, f"{t:.3f}"] for s, t in step_seconds.items()]))
    if spectrogram_uri:
        span = f"{spectrogram_span[0]:.1f} s to {spectrogram_span[1]:.1f} s of the input" if spectrogram_span else ""
        sections.append(Section("Spectrograms, before and after", span, image=spectrogram_uri, image_file=spectrogram_png))
    if loudness is not None:
        sections.append(_loudness_section(loudness))
    sections.append(Section("Settings", header=["setting", "value", ""], rows=[(name, value, how) for name, (value, how) in sorted(settings.items())]))
    sections.append(Section("Files", header=["file", "path"], rows=[[label, f"`{path}`"] for label, path in files.items()]))
    return f"destatic: {source.name}", facts, sections


def render_report(*, listening: Path | None = None, **page: Any) -> str:
    """The markdown report of one file: :func:`report_page` (same arguments) as markdown.

    Parameters
    ----------
    listening : Path or None
        The file's ``report.html``, linked by its path.
    """
    title, facts, sections = report_page(**page)
    return render_markdown(title, facts, sections, listening=listening)


def render_markdown(title: str, facts: Sequence[str], sections: Sequence[Section], *, listening: Path | None = None) -> str:
    """A report (:func:`report_page`) as markdown; `listening` linked among the facts by its path."""
    if listening is not None:
        facts = [*facts, f"listen before and after: [{listening.name}]({Path(listening).absolute().as_uri()}) (`{listening}`)"]
    parts = [f"# {title}", "\n".join(f"- {fact}" for fact in facts)]
    for section in sections:
        parts.append(f"## {section.title}")
        if section.text:
            parts.append(section.text)
        if section.image:
            parts.append(f"![{section.title.lower()}]({section.image})")
        if section.header:
            parts.append(markdown_table(section.header, section.rows))
    return "\n\n".join(parts) + "\n"


def at_lowest_priority(work: Callable[[], Any]) -> Any:
    """Call `work` in a new thread at the lowest CPU priority (nice 19) and return its result.

    For work that only people read (plots) and that runs beside a step on the
    critical path (the encode): it then takes the CPU time the encoders leave,
    instead of slowing them. On Linux the nice value is per thread, and a new
    thread (not a pool thread, which would stay lowered) is given it; elsewhere
    the thread runs at normal priority.
    """

    def lowered() -> Any:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return work()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="destatic-low") as pool:
        return pool.submit(lowered).result()


def run(
    audio: ExtractedAudio, noise: ProfiledNoise, cleaned: AudioFile, target: Path, *, previews: bool = True, source: Path | None = None
) -> Plots:
    """The report step: plots, the estimated reduction, and the excerpt the listening report plays.

    Picks the excerpt (:func:`choose_excerpt`), plots the noise profile and the
    spectrograms of the excerpt, writes the excerpt before and after cleaning
    and, for a video, preview clips of it. Done at the lowest priority
    (:func:`at_lowest_priority`), beside the encode.

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
        with dsp.caching_other_packages(target.parent / ".numba"):  # librosa's cached functions, decorated as it is imported
            spectrograms = plot_spectrograms(audio.path, cleaned.path, spectrogram_png, start=start, seconds=end - start)
        excerpts = {label: write_excerpt(wav, target.with_name(f"{target.stem}-{label}.flac"), start=start, end=end)
                    for label, wav in (("before", audio.path), ("after", cleaned.path))}
        clips, note = preview_clips(audio, excerpts, start, end, target.with_name(target.stem), video=source) if previews else ({}, None)
        before, _ = energies
        quality = score_voice(audio.path, cleaned.path, before, _quiet(before) if len(before) else before > 0, LEVEL_FRAME_S)
        return Plots(
            path=target,
            profile_png=profile_png,
            spectrogram_png=spectrogram_png,
            profile_uri=plot_profile(noise.profile, profile_png),
            spectrogram_uri=spectrograms,
            reduction_db=noise_reduction_db(audio.path, cleaned.path, energies=energies),
            excerpt=(start, end),
            before_excerpt=excerpts["before"],
            after_excerpt=excerpts["after"],
            before_clip=clips.get("before"),
            after_clip=clips.get("after"),
            clip_note=note,
            quality=quality,
        )

    plots = at_lowest_priority(draw)
    record = {name: str(value) if isinstance(value, Path) else value for name, value in vars(plots).items() if name != "path"}
    with media.atomic_output(target) as partial:
        partial.write_text(json.dumps(record), encoding="utf-8")
    return plots


def settings_used(settings: Settings) -> dict[str, tuple[Any, str]]:
    """Every setting as ``group.name -> (value used, "set" or "default")``.

    The settings that leave a choice to the DSP core (none) show what it
    chose: the method, the profile mode and the suppression options.
    """
    method = dsp.resolve_method(settings.suppression.method)
    defaults = dsp.SuppressionOptions()
    fallback = "" if dsp.learned_available() else f" (the learned default needs {dsp.LEARNED_NEEDS}, not installed here)"
    resolved = {
        "suppression.method": method + fallback,
        **({} if settings.noise.profile_file else {"noise.mode": settings.noise.resolved_mode(settings.suppression.method)}),
        **(
            {}
            if method == "seed"
            else {
                "suppression.reduction_db": defaults.max_reduction_db,
                "suppression.smoothing": defaults.smoothing,
                "suppression.sensitivity_db": defaults.sensitivity_db,
            }
        ),
    }
    default = Settings.model_construct().model_dump(mode="json")
    used = {}
    for group, fields in settings.model_dump(mode="json").items():
        for name, value in fields.items():
            setting = f"{group}.{name}"
            how = "default" if value == default[group][name] else "set"
            used[setting] = (resolved[setting] if value is None and setting in resolved else value, how)
    return used


def _profile_how(settings: Settings, profile: dsp.NoiseProfile) -> str:
    """How the noise profile was made, one line."""
    noise = settings.noise
    mode = "saved" if noise.profile_file is not None else noise.resolved_mode(settings.suppression.method)
    how = {
        "saved": f"saved: the profile `{noise.profile_file}`, its hum learned anew from this file",
        "auto": "auto: noise floor tracked by minimum statistics (no noise-only stretch needed)",
        "head": f"head: the first {noise.head_samples} samples are taken as noise only",
        "segment": f"segment: {noise.start_s} s to {noise.end_s} s of the input are noise only",
        "file": f"file: the separate noise recording `{noise.file}`",
    }[mode]
    details = ", ".join(f"{name}={value}" for name, value in profile.details.items())
    return (
        f"{how}; {profile.sample_rate} Hz, n_fft {profile.n_fft}, hop {profile.hop_length}, "
        f"{profile.channels} channel(s), measured as `{profile.mode}`" + (f" ({details})" if details else "")
    )


def _stream_rows(info: media.MediaInfo) -> list[dict[str, Any]]:
    rows = []
    for stream in info.streams:
        row = {"index": stream.index, "type": stream.kind, "codec": stream.codec}
        for name in ("sample_rate", "channels", "width", "height", "duration"):
            value = getattr(stream, name, None)
            if value is not None:
                row[name] = value
        rows.append(row)
    return rows


def write_report(
    *,
    source: Path,
    output: Path,
    work_dir: Path,
    audio: ExtractedAudio,
    noise: ProfiledNoise,
    cleaned: AudioFile,
    plots: Plots,
    settings: Settings,
    step_seconds: Mapping[str, float],
    artifact_key: str,
    flow_run_id: str | None,
    loudness: Leveled | None = None,
) -> str:
    """Write ``report.md``, ``report.html`` and ``last-run.json`` into `work_dir` (atomically); return the markdown.

    Parameters
    ----------
    source, output : Path
        The input and where its result went.
    work_dir : Path
        The file's work folder.
    audio, noise, cleaned, plots
        The records of the extract, profile, inverse and report steps.
    loudness : Leveled or None
        The loudness step's record, when it ran.
    settings : Settings
        What the run was given.
    step_seconds : mapping
        Wall time of each step, s.
    artifact_key : str
        The key of the markdown artifact the report is published as.
    flow_run_id : str or None
        The Prefect flow run that made it.
    """
    files = {
        "work folder": work_dir,
        "profile plot": plots.profile_png,
        "spectrograms": plots.spectrogram_png,
        "audio": audio.path,
        "noise profile": noise.path,
        "cleaned audio": cleaned.path,
    }
    files.update({label: path for label, path in (("excerpt before", plots.before_excerpt), ("excerpt after", plots.after_excerpt),
                  ("preview before", plots.before_clip), ("preview after", plots.after_clip)) if path is not None})
    title, facts, sections = report_page(
        source=source,
        output=output,
        streams=_stream_rows(audio.source),
        profile_how=_profile_how(settings, noise.profile),
        settings=settings_used(settings),
        step_seconds=step_seconds,
        reduction_db=plots.reduction_db,
        profile_uri=plots.profile_uri,
        spectrogram_uri=plots.spectrogram_uri,
        loudness=loudness,
        files=files,
        profile_png=plots.profile_png,
        spectrogram_png=plots.spectrogram_png,
        spectrogram_span=plots.excerpt if plots.before_excerpt is not None else None,
        quality=plots.quality,
    )
    page = work_dir / REPORT_HTML
    with media.atomic_output(page) as partial:
        partial.write_text(render_html(title, facts, sections, players_of(plots)), encoding="utf-8")
    text = render_markdown(title, facts, sections, listening=page)
    path = work_dir / "report.md"
    with media.atomic_output(path) as partial:
        partial.write_text(text, encoding="utf-8")
    record = {
        "source": str(source),
        "output": str(output),
        "work_dir": str(work_dir),
        "report": str(path),
        "report_html": str(page),
        "profile_plot": str(plots.profile_png),
        "spectrogram_plot": str(plots.spectrogram_png),
        "artifact_key": artifact_key,
        "flow_run_id": flow_run_id,
        "reduction_db": plots.reduction_db,
        "speech_quality": plots.quality,
        "step_seconds": dict(step_seconds),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with media.atomic_output(work_dir / LAST_RUN) as partial:
        partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return text
