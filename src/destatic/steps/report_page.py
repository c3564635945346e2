"""The report of one file as people read it: ``report.md``, ``report.html`` and ``last-run.json`` in its work folder.

:func:`report_page` holds what the report says (its facts and
:class:`~destatic.steps.listening.Section` list, the settings used among
them: :func:`settings_used`); :mod:`destatic.steps.markdown` renders it as
markdown and :mod:`destatic.steps.listening` as HTML. :func:`write_report`
writes the three files after a run, from the records of its steps, and
returns the markdown for the Prefect artifact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from destatic import dsp, media
from destatic.settings import Settings
from destatic.steps.listening import Section, players_of, render_html
from destatic.steps.markdown import render_markdown
from destatic.steps.quality import describe as describe_quality
from destatic.steps.records import AudioFile, ExtractedAudio, Leveled, Plots, ProfiledNoise
from destatic.steps.report import QUIET_FRACTION

__all__ = ["LAST_RUN", "REPORT_HTML", "report_page", "settings_used", "write_report"]

LAST_RUN = "last-run.json"
"""The record of a file's last run, in its work folder (read by ``destatic artifacts``)."""
REPORT_HTML = "report.html"
"""The listening report, beside ``report.md`` (:mod:`destatic.steps.listening`)."""


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

    :func:`destatic.steps.markdown.render_markdown` writes it as markdown, :func:`destatic.steps.listening.render_html` as HTML.

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

def settings_used(settings: Settings, profile_mode: str | None = None) -> dict[str, tuple[Any, str]]:
    """Every setting as ``group.name -> (value used, "set" or "default")``.

    The settings that leave a choice to the DSP core (none) show what it
    chose: the method, the profile mode and the suppression options. Given
    the mode of the profile used, a maximum reduction that no gain reaches
    with it says how deep the gains went (the hybrid's with an automatic
    profile: :func:`~destatic.dsp.options.deepest_reduction_db`).
    """
    method = dsp.resolve_method(settings.suppression.method)
    defaults = dsp.method_spec(method).options()
    fallback = "" if dsp.learned_available() else f" (the learned default needs {dsp.LEARNED_NEEDS}, not installed here)"
    resolved = {
        "suppression.method": method + fallback,
        **({} if settings.noise.profile_file else {"noise.mode": settings.noise.resolved_mode(settings.suppression.method)}),
        **(
            {}
            if not dsp.method_spec(method).accepts
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
    reduction, how = used["suppression.reduction_db"]
    if profile_mode is not None and isinstance(reduction, float):
        deepest = dsp.deepest_reduction_db(method, reduction, measured=profile_mode != "auto")
        if deepest != reduction:
            used["suppression.reduction_db"] = (f"{reduction} (at most {deepest} with the {profile_mode} profile)", how)
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
        settings=settings_used(settings, profile_mode=noise.profile.mode),
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
