"""The listening report: ``report.html``, one self-contained page per file, to hear and see what cleaning did.

The page holds what ``report.md`` holds (the same :class:`Section` list,
rendered here as HTML instead of markdown) and, above it, before and after
players on one excerpt: ``<audio>`` for every file, ``<video>`` previews
for a video. Everything is embedded as ``data:`` URIs: no script, no
external resource, every user-supplied string escaped.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from destatic import media
from destatic.steps.records import AudioFile, Plots

__all__ = ["EXCERPT_RATE", "Players", "Section", "data_uri", "players_of", "previews", "read_mono", "render_html", "write_excerpt"]

EXCERPT_RATE = 22050
"""Hz, at most: the excerpts are 16-bit mono FLAC at this rate (or the input's, if lower)."""
MIME = {".flac": "audio/flac", ".wav": "audio/wav", ".mp4": "video/mp4", ".png": "image/png"}
_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; word-break: break-all; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
code { font: 0.85em ui-monospace, monospace; background: #f3f3f3; padding: 0 0.2em; word-break: break-all; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
.pair { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; } figcaption { font-weight: 600; }
img { max-width: 100%; height: auto; } audio { width: 22rem; max-width: 100%; } .note { color: #666; }
"""


@dataclass(frozen=True)
class Section:
    """One part of a file's report, rendered as markdown (``report.md``) and as HTML (``report.html``).

    Attributes
    ----------
    title : str
    text : str
        A paragraph; ```code``` and ``**bold**`` marks are the only markup.
    header, rows
        A table, if any.
    image : str or None
        A small copy of a plot as a data: URI (the markdown's).
    image_file : Path or None
        The full-size plot (the page's, when it is still there).
    """

    title: str
    text: str = ""
    header: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    image: str | None = None
    image_file: Path | None = None


@dataclass(frozen=True)
class Players:
    """What the page plays: the excerpt, its before and after audio, and video previews if any.

    Attributes
    ----------
    start, end : float
        The excerpt, seconds of the input.
    audio : mapping
        ``"before"`` / ``"after"`` -> FLAC file.
    video : mapping
        ``"before"`` / ``"after"`` -> MP4 preview (empty for audio inputs).
    note : str or None
        Why a preview is missing.
    """

    start: float
    end: float
    audio: Mapping[str, Path] = field(default_factory=dict)
    video: Mapping[str, Path] = field(default_factory=dict)
    note: str | None = None


def read_mono(wav: Path, start: float, seconds: float) -> tuple[np.ndarray, int]:
    """`seconds` of `wav` from `start` (clipped to the file), channels averaged: samples and rate."""
    with sf.SoundFile(wav) as handle:
        first = min(handle.frames, max(0, round(start * handle.samplerate)))
        handle.seek(first)
        frames = min(handle.frames - first, max(0, round(seconds * handle.samplerate)))
        return handle.read(frames=frames, dtype="float32", always_2d=True).mean(axis=1), handle.samplerate


def write_excerpt(wav: Path, target: Path, *, start: float, end: float, rate: int = EXCERPT_RATE) -> Path:
    """Write `start` to `end` seconds of `wav` as 16-bit mono at most `rate` Hz (the format from `target`'s suffix).

    Returns
    -------
    Path
        `target`, written atomically.
    """
    audio, native = read_mono(wav, start, end - start)
    out_rate = min(native, rate)
    if out_rate != native and len(audio):
        import soxr

        audio = soxr.resample(audio, native, out_rate)
    if not len(audio):
        audio = np.zeros(1, np.float32)  # a player needs at least one sample
    with media.atomic_output(target) as partial:
        sf.write(partial, np.clip(audio, -1.0, 1.0), out_rate, subtype="PCM_16")
    return target


def previews(
    audio: AudioFile, excerpts: Mapping[str, Path], start: float, end: float, stem: Path, *, video: Path | None = None
) -> tuple[dict[str, Path], str | None]:
    """The preview clips of a video input with each excerpt as its sound (none for audio), and why they are missing.

    Parameters
    ----------
    audio : AudioFile
        The extracted audio (an :class:`ExtractedAudio`: its probe tells a video, its offset the sync).
    excerpts : mapping
        Label -> the excerpt's sound.
    start, end : float
        The excerpt, seconds of the audio.
    stem : Path
        Clips are written as ``<stem>-<label>.mp4`` (:func:`destatic.media.preview_clips`).
    video : Path or None
        Where the input is now; None: where it was probed.

    Returns
    -------
    tuple
        Label -> clip, and None or the reason there are none.
    """
    source = getattr(audio, "source", None)
    if source is None or not source.has_video:
        return {}, None
    offset = getattr(audio, "offset", 0.0)
    try:
        return media.preview_clips(video or source.path, excerpts, stem, start=start + offset, end=end + offset), None
    except Exception as error:  # a preview only: the report goes on without it
        return {}, f"no video preview: {type(error).__name__}: {error}"


def players_of(plots: Plots) -> Players | None:
    """What a report step's record gives the page to play; None for a record without excerpts."""
    if plots.before_excerpt is None or plots.after_excerpt is None:
        return None
    clips = {"before": plots.before_clip, "after": plots.after_clip}
    return Players(
        start=plots.excerpt[0],
        end=plots.excerpt[1],
        audio={"before": plots.before_excerpt, "after": plots.after_excerpt},
        video={label: clip for label, clip in clips.items() if clip is not None},
        note=plots.clip_note,
    )


def data_uri(path: Path) -> str:
    """A file as a ``data:<mime>;base64,...`` URI (the MIME type from its suffix)."""
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _inline(text: str) -> str:
    """`text` escaped, its ```code``` and ``**bold**`` marks made tags."""
    escaped = html.escape(str(text))
    escaped = re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(section: Section) -> str:
    source = data_uri(section.image_file) if section.image_file is not None and section.image_file.is_file() else section.image
    return f'<img src="{source}" alt="{html.escape(section.title)}">' if source else ""


def _players(players: Players) -> str:
    span = f"{players.start:.1f} s to {players.end:.1f} s"
    parts = ["<h2>Listen: before and after</h2>",
             f"<p>The same excerpt, {span} of the input: the stretch with the most sound above the noise floor "
             f"(16-bit mono, at most {EXCERPT_RATE} Hz).</p>"]
    if players.audio:
        parts.append('<div class="pair">' + "".join(
            f'<figure><figcaption>{label}</figcaption><audio controls preload="auto" src="{data_uri(path)}"></audio></figure>'
            for label, path in players.audio.items() if path.is_file()
        ) + "</div>")
    if players.video:
        parts.append('<div class="pair">' + "".join(
            f'<figure><figcaption>{label} (preview)</figcaption><video controls preload="auto" width="320" src="{data_uri(path)}"></video></figure>'
            for label, path in players.video.items() if path.is_file()
        ) + "</div>")
    if players.note:
        parts.append(f'<p class="note">{_inline(players.note)}</p>')
    return "\n".join(parts)


def render_html(title: str, facts: Sequence[str], sections: Sequence[Section], players: Players | None) -> str:
    """The listening report of one file, a self-contained HTML page.

    Parameters
    ----------
    title : str
        The page's heading (holds the file name: escaped here, as is everything).
    facts : sequence of str
        One line each, under the heading.
    sections : sequence of Section
        The report's parts, as in ``report.md``.
    players : Players or None
        The excerpt to play; None: no players (the record predates them).

    Returns
    -------
    str
    """
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{_inline(fact)}</li>" for fact in facts) + "</ul>",
    ]
    if players is not None:
        parts.append(_players(players))
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{_inline(section.text)}</p>")
        parts.append(_image(section))
        if section.header:
            parts.append(_table(section.header, section.rows))
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part) + "\n"
