"""``destatic run``: clean files now, through the denoise-file (one file) or denoise-files (many) flow."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from destatic import _digest
from destatic.cli.common import (
    EXIT_FAILED,
    ConfigOption,
    NoiseEnd,
    NoiseFile,
    NoiseStart,
    ProfileFileOption,
    ProfileOption,
    Verbose,
    app,
    console,
    noise_overrides,
    prefect_api,
    settings_from,
    settle,
    show_prefect_log_lines,
)
from destatic.dsp.methods import CLASSIC_DEFAULT, LEARNED_DEFAULT, Method, methods_described
from destatic.errors import DestaticError, ParameterError
from destatic.media import AudioFormat
from destatic.settings import TaskRunnerKind


@app.command()
def run(
    inputs: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, metavar="FILE", help="Video or audio files.")
    ],
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Output file (one input; its extension picks the format) or folder."),
    ] = None,
    audio_only: Annotated[bool, typer.Option("--audio-only", metavar="", help="Write the cleaned audio alone (flac unless --format or -o says).")] = False,
    format: Annotated[
        Optional[AudioFormat], typer.Option("--format", case_sensitive=False, help="Write the cleaned audio alone, in this format.")
    ] = None,
    noise_start: NoiseStart = None,
    noise_end: NoiseEnd = None,
    noise_file: NoiseFile = None,
    profile: ProfileOption = None,
    profile_file: ProfileFileOption = None,
    residue: Annotated[
        Optional[Path],
        typer.Option("--residue", help="Also write what was removed (sample-aligned, like the output) here: a file for one input, a folder for many (each named OUTPUT-residue.EXT)."),
    ] = None,
    loudness: Annotated[
        Optional[float], typer.Option("--loudness", help="Bring the result to this integrated loudness, LUFS (-16 for speech online), true peak at most -1 dBTP.")
    ] = None,
    method: Annotated[Optional[Method], typer.Option("--method", help=f"Suppression method: {methods_described()}. Default: {LEARNED_DEFAULT} where its wheels are installed, else {CLASSIC_DEFAULT}.")] = None,
    reduction_db: Annotated[Optional[float], typer.Option("--reduction-db", help="Largest reduction of any frequency, dB (more than 0, at most 120).")] = None,
    work: Annotated[Optional[Path], typer.Option("--work", help="Work folder (cache, reports).")] = None,
    task_runner: Annotated[
        Optional[TaskRunnerKind], typer.Option("--task-runner", help="Where the steps of many files run.")
    ] = None,
    dask_address: Annotated[
        Optional[str], typer.Option("--dask-address", help="Scheduler of an existing Dask cluster (with --task-runner dask).")
    ] = None,
    config: ConfigOption = None,
    verbose: Verbose = False,
) -> None:
    """Clean one file or many: one through the denoise-file flow, many in one denoise-files flow run.

    The steps of many files run at once on the task runner of the settings
    (runtime.task_runner: threads, or a Dask cluster).
    """
    from destatic.media import AUDIO_SUFFIXES

    show_prefect_log_lines(verbose)
    _digest.prefetch(inputs)  # the work folders are named by content: hashed while the pipeline loads
    noise = noise_overrides(noise_start, noise_end, noise_file, profile, profile_file)
    if output is not None and len(inputs) == 1 and output.suffix.lower() in AUDIO_SUFFIXES and not output.is_dir():
        audio_only = True
        format = format or output.suffix.lower().lstrip(".")
    settings = settings_from(
        config,
        output={"mode": "audio" if audio_only or format else None, "format": format, "loudness_lufs": loudness},
        noise=noise,
        suppression={"method": method, "reduction_db": reduction_db},
        paths={"work": work},
        runtime={"task_runner": task_runner, "dask_address": dask_address},
    )
    from destatic import preflight, shortcut

    try:
        requests = preflight.plan(inputs, settings, output=output, residue=residue)
    except ParameterError as error:
        raise typer.BadParameter(str(error)) from None
    if settings.runtime.shortcut and shortcut.answer_again(requests, settings):
        for item in requests:
            typer.echo(str(item.output))
        return
    _start_ahead(inputs[0], settings)

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    # No heartbeat thread: it only detects crashed runs of deployments, and
    # each flow run would wait for it at exit.
    from prefect import tags

    from destatic.flows import run_tags

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), prefect_api(settings, must_answer=True) as embedded, tags(*run_tags(settings)):
        if len(requests) == 1:
            failed, flow_runs = _run_one(requests[0], settings)
        else:
            failed, flow_runs = _run_many(requests, settings)
        if embedded:
            settle(flow_runs)
    if failed:
        console.print(f"{failed} of {len(inputs)} file(s) failed")
        raise typer.Exit(EXIT_FAILED)


def _start_ahead(source: Path, settings: Any) -> None:
    """Start the steps' children and the extraction of `source` now, so that they run while Prefect loads (see :mod:`destatic.steps.warming`)."""
    from destatic import steps
    from destatic.workspace import work_dir_for

    source = source.absolute()  # as the flow takes it: the extraction's key names the path
    try:
        work_dir = work_dir_for(source, settings)
    except DestaticError:
        return  # the flow reports what is wrong with the file
    steps.warming.start_ahead(settings, source, work_dir)


@contextlib.contextmanager
def _progress_bars(sources: list[Path], settings: Any) -> Iterator[None]:
    """A rich progress bar per input, moved by its steps as they report (tasks in this process)."""
    from destatic import tasks
    from destatic.workspace import work_dir_for

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bars:
        bar_of: dict[Path, TaskID] = {}
        for source in sources:
            try:
                bar_of[work_dir_for(source, settings).absolute()] = bars.add_task(source.name, total=100)
            except DestaticError:  # not a readable regular file: the flow reports it
                continue

        def move(work_dir: Path, percent: float) -> None:
            bar = bar_of.get(work_dir.absolute())
            if bar is not None:
                bars.update(bar, completed=percent)

        token = tasks.progress_listener.set(move)
        try:
            yield
        finally:
            tasks.progress_listener.reset(token)


def _run_one(request: Any, settings: Any) -> tuple[int, list[Any]]:
    """Clean one file (a :class:`~destatic.preflight.Request`) through the denoise-file flow; the number of failures (0 or 1) and the flow run."""
    from destatic.flows import denoise_file
    from destatic.runners import task_runner_for

    source = request.source
    with _progress_bars([source], settings):
        on_runner = denoise_file.with_options(task_runner=task_runner_for(settings.runtime))
        state = on_runner(source, settings, output=request.output, residue=request.residue, return_state=True)
    flow_runs = [state.state_details.flow_run_id]
    try:
        written = state.result()
    except DestaticError as error:
        console.print(f"[red]failed:[/red] {error}", highlight=False, soft_wrap=True)
        return 1, flow_runs
    except Exception as error:
        console.print(f"[red]failed:[/red] {source}: {type(error).__name__}: {error}", highlight=False, soft_wrap=True)
        return 1, flow_runs
    from destatic.flows.graph import FINISHED

    summary = FINISHED.pop(str(written), {})
    say_done(source, summary.get("speech_quality"), summary.get("needs_listening", False))
    typer.echo(str(written))
    return 0, flow_runs


def say_done(source: Path | str, quality: float | None, needs_listening: bool) -> None:
    """The one-line summary of a file done, on the console: its output's speech quality, flagged when low."""
    from destatic.steps.quality import NEEDS_LISTENING_BELOW

    if quality is None:
        how = "speech quality not scored (no voice found)"
    else:
        how = f"speech quality {quality:.2f} of 5 (DNSMOS OVRL)"
        if needs_listening:
            how += f", below {NEEDS_LISTENING_BELOW:g}: [bold]needs listening[/bold]"
    console.print(f"done: {Path(source).name}: {how}", highlight=False, soft_wrap=True)


def _run_many(requests: list[Any], settings: Any) -> tuple[int, list[Any]]:
    """Clean many files (:class:`~destatic.preflight.Request`) in one denoise-files flow run on the configured task runner; the number of failures and the flow run."""
    from destatic.flows import run_batch

    inputs = [item.source for item in requests]
    residues = [item.residue for item in requests]
    runner = settings.runtime.task_runner + (f" at {settings.runtime.dask_address}" if settings.runtime.dask_address else "")
    console.print(f"cleaning {len(inputs)} files ({runner})", highlight=False)
    with _progress_bars(inputs, settings):
        rows = run_batch(inputs, settings, outputs=[item.output for item in requests], residues=residues if any(residues) else None)
    for row in rows:
        if row["status"] == "done":
            say_done(row["file"], row.get("speech_quality"), row.get("needs_listening", False))
            typer.echo(row["output"])
        else:
            console.print(f"[red]failed:[/red] {row['file']}: {row['reason']} (step {row['step']})", highlight=False, soft_wrap=True)
    return sum(row["status"] != "done" for row in rows), sorted({row["flow_run"] for row in rows if row.get("flow_run")})


