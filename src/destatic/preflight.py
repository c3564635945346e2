"""Checks before a run: where each input's output (and residue) goes, and what would fail late. No Prefect here.

One place for every check made before a file's steps start: the command
line calls :func:`plan` before it loads Prefect (a refusal is a usage
error, exit 2, and nothing is written), and the flow calls :func:`request`
for each file it is given (by the command line, the watcher or a caller of
the flow), so that a run that did not come through the command line is
held to the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from destatic import media, steps
from destatic.errors import DestaticError, ParameterError
from destatic.settings import Settings
from destatic.workspace import check_output, default_output, residue_output

__all__ = ["Request", "check_media", "plan", "request"]


@dataclass(frozen=True)
class Request:
    """One input, with the absolute paths its output and (None: none asked for) its residue go to."""

    source: Path
    output: Path
    residue: Path | None


def request(source: Path, settings: Settings, *, output: Path | None = None, residue: Path | None = None) -> Request:
    """Where cleaning `source` writes: `output` (or its default name), and its residue (asked for, or by ``output.residue``).

    Raises
    ------
    ParameterError
        A name that does not say what would be written in it (:func:`destatic.workspace.check_output`).
    """
    target = Path(output or default_output(source, settings)).absolute()
    check_output(source, target, settings)
    if residue is None and settings.output.residue:
        residue = residue_output(target)
    if residue is not None:
        residue = Path(residue).absolute()
        check_output(source, residue, settings, residue=True)
    return Request(source, target, residue)


def _targets(inputs: Sequence[Path], named: Path | None, *, option: str, name_of: Callable[[Path], str]) -> list[Path | None]:
    """Each input's file under `named`: that file for one input, else a file named `name_of(source)` in that folder."""
    if named is None:
        return [None] * len(inputs)
    if len(inputs) == 1 and not named.is_dir():
        return [named]
    if named.exists() and not named.is_dir():
        raise ParameterError(f"{option} {str(named)!r} must be a folder for {len(inputs)} inputs")
    return [named / name_of(source) for source in inputs]


def plan(inputs: Sequence[Path], settings: Settings, *, output: Path | None = None, residue: Path | None = None) -> list[Request]:
    """The requests of cleaning `inputs`, every name checked, and then what their media must allow (:func:`check_media`).

    Parameters
    ----------
    inputs : sequence of Path
        The files to clean.
    output, residue : Path or None
        A file (one input) or a folder (any number) for the outputs and the residues; None: the default names.

    Raises
    ------
    ParameterError
        The first thing that does not fit, in words naming the option or the file.
    """
    outputs = _targets(inputs, output, option="--output", name_of=lambda source: default_output(source, settings).name)
    residues = _targets(inputs, residue, option="--residue", name_of=lambda source: residue_output(default_output(source, settings)).name)
    requests = [request(source, settings, output=target, residue=extra) for source, target, extra in zip(inputs, outputs, residues)]
    check_media(requests, settings)
    return requests


def check_media(requests: Sequence[Request], settings: Settings) -> None:
    """Refuse what the inputs' media make fail late: a noise stretch past an input's end, a saved profile that does not fit it.

    An input that cannot be probed passes: its run says what is wrong with it.
    """
    start = settings.noise.start_s if settings.noise.mode == "segment" else None
    saved = settings.noise.profile_file
    for source in (item.source for item in requests) if start is not None or saved is not None else ():
        try:
            info = media.probe(source)
            stream = info.default_audio_stream
        except DestaticError:
            continue
        if start is not None and info.duration is not None and start >= info.duration:
            raise ParameterError(f"--noise-start {start:g} s is past the end of {source.name} ({info.duration:g} s long)")
        if saved is not None and stream is not None:
            try:
                steps.profile.saved_profile(saved, sample_rate=stream.sample_rate or 0, channels=stream.channels or 1, method=settings.suppression.method)
            except ParameterError as error:
                raise ParameterError(f"{source.name}: {error}") from None
