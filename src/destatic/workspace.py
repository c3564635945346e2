"""Where each input's files go: its work folder, its report's artifact key, its default output.

Every name is derived from the input's content (a hash of its bytes), so a
file keeps its work folder and cache wherever it is moved, and two files of
the same name never share one.
"""

from __future__ import annotations

import re
from pathlib import Path

from destatic import media
from destatic._digest import file_digest
from destatic.errors import ParameterError
from destatic.settings import Settings

__all__ = ["check_output", "default_output", "report_key", "residue_output", "slug", "work_dir_for"]


def slug(text: str, *, limit: int = 40) -> str:
    """Lowercase letters, digits and dashes only (Prefect artifact keys), at most `limit` characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "file"


def report_key(source: Path) -> str:
    """Prefect artifact key of a file's report: ``destatic-<name>-<digest>``."""
    return f"destatic-{slug(source.stem)}-{file_digest(source)[:8]}"


def work_dir_for(source: Path, settings: Settings) -> Path:
    """The work folder of an input: named by its stem and the hash of its bytes."""
    return settings.paths.work.resolve() / f"{slug(source.stem)}-{file_digest(source)[:12]}"


def default_output(source: Path, settings: Settings) -> Path:
    """Beside the input, stem + suffix; audio-only mode takes the format's extension."""
    extension = f".{settings.output.format or 'flac'}" if settings.output.mode == "audio" else source.suffix
    return source.with_name(f"{source.stem}{settings.output.suffix}{extension}")


def writes_audio_only(source: Path, settings: Settings) -> bool:
    """Whether cleaning `source` writes the audio alone: asked for (``output.mode="audio"``), or the input is audio."""
    return settings.output.mode == "audio" or source.suffix.lower() in media.AUDIO_SUFFIXES


def residue_output(output: Path) -> Path:
    """Where the residue of `output` goes unless named: beside it, ``NAME-residue.EXT``."""
    return output.with_name(f"{output.stem}-residue{output.suffix}")


def check_output(source: Path, output: Path, settings: Settings, *, residue: bool = False) -> None:
    """Refuse an output name that does not say what will be written in it: one rule for the command line, the flows and the watcher.

    Audio alone (``output.mode="audio"``, which ``output.format`` implies)
    goes into a file named for its format: ``.flac`` for flac. A remux keeps
    the input's container, so its suffix. An audio input is exported in its
    output's format. The `residue` of a video may also be the audio alone,
    in any audio format (what was removed is for listening).

    Raises
    ------
    ParameterError
        Saying which name would fit.
    """
    suffix = output.suffix.lower()
    if settings.output.mode == "audio":
        wanted = settings.output.format
        if suffix not in media.AUDIO_SUFFIXES or (wanted is not None and media.AUDIO_SUFFIXES[suffix] != wanted):
            name = output.with_suffix(f".{wanted or 'flac'}").name
            raise ParameterError(
                f"output {output.name!r}: the cleaned audio alone is written as {wanted or 'audio'}, not into "
                f"{output.suffix or 'a file without a suffix'}; name it {name!r}, or leave the audio-only choice out to keep the video"
            )
    elif source.suffix.lower() in media.AUDIO_SUFFIXES:
        if suffix not in media.AUDIO_SUFFIXES:
            raise ParameterError(
                f"output {output.name!r}: {source.name!r} is audio, so is what comes out; use an audio extension "
                f"({', '.join(media.AUDIO_SUFFIXES)})"
            )
    elif suffix != source.suffix.lower() and not (residue and suffix in media.AUDIO_SUFFIXES):
        raise ParameterError(
            f"output {output.name!r}: remuxing keeps the container {source.suffix!r}; use that extension, "
            f"or an audio extension ({', '.join(media.AUDIO_SUFFIXES)}) for the audio alone"
        )
