"""The ``destatic`` command: run, watch, profile, artifacts.

Every command builds :class:`~destatic.settings.Settings` from its flags (the
strongest source) and calls a flow or a task's core. Exit status: 0 success,
1 a file failed, 2 bad usage or a bad setting.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from destatic import __version__, _digest
from destatic.dsp import Method, ProfileMode
from destatic.errors import DestaticError, ParameterError
from destatic.media import AudioFormat
from destatic.settings import Dispatch, TaskRunnerKind

app = typer.Typer(
    name="destatic",
    help="Remove steady background noise (hiss, hum, fans, static) from videos and recordings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
EXIT_FAILED = 1
EXIT_USAGE = 2


def _prefect_environment() -> None:
    """Prefect defaults for a command line run, set before Prefect is imported (the user's environment wins).

    The embedded server may need more than Prefect's 20 s to start (database
    migrations on a first run, a busy machine); no telemetry.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", exists=True, dir_okay=False, help="TOML settings file (default: ./destatic.toml)."),
]
NoiseStart = Annotated[Optional[float], typer.Option("--noise-start", min=0, help="Start of a noise-only stretch, s.")]
NoiseEnd = Annotated[Optional[float], typer.Option("--noise-end", min=0, help="End of a noise-only stretch, s.")]
NoiseFile = Annotated[
    Optional[Path],
    typer.Option("--noise-file", exists=True, dir_okay=False, help="A separate noise-only recording."),
]
ProfileFileOption = Annotated[
    Optional[Path],
    typer.Option("--profile-file", exists=True, dir_okay=False, help="A noise profile saved by destatic profile --save (.npz), used for every file."),
]
ProfileOption = Annotated[
    Optional[ProfileMode], typer.Option("--profile", help="How to find the noise (default auto).")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"destatic {__version__}")
        raise typer.Exit()


@app.callback()
def common_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, metavar="", help="Print the version and exit.")
    ] = False,
) -> None:
    """Remove steady background noise from videos and recordings, through a Prefect pipeline."""
    _prefect_environment()


def _noise_overrides(
    noise_start: float | None,
    noise_end: float | None,
    noise_file: Path | None,
    profile: ProfileMode | None,
    profile_file: Path | None = None,
) -> dict[str, Any]:
    given = [name for name, value in (("--noise-start/--noise-end", noise_start is not None or noise_end is not None),
                                      ("--noise-file", noise_file is not None), ("--profile", profile is not None),
                                      ("--profile-file", profile_file is not None)) if value]
    if len(given) > 1:
        raise typer.BadParameter(f"choose one of {', '.join(given)}")
    if (noise_start is None) != (noise_end is None):
        raise typer.BadParameter("--noise-start and --noise-end go together")
    if noise_start is not None:
        return {"mode": "segment", "start_s": noise_start, "end_s": noise_end}
    if noise_file is not None:
        return {"mode": "file", "file": noise_file}
    if profile_file is not None:
        return {"profile_file": profile_file}
    return {"mode": profile}


def _settings(config: Path | None, **overrides: Any) -> Any:
    from destatic.settings import load_settings

    try:
        return load_settings(config=config, **overrides)
    except ParameterError as error:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def _outputs(inputs: list[Path], output: Path | None, settings: Any) -> list[Path]:
    from destatic.workspace import default_output

    if output is None:
        return [default_output(source, settings) for source in inputs]
    if len(inputs) == 1 and not output.is_dir():
        return [output]
    if output.exists() and not output.is_dir():
        raise typer.BadParameter(f"--output {str(output)!r} must be a folder for {len(inputs)} inputs")
    return [output / default_output(source, settings).name for source in inputs]


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
        typer.Option("--residue", help="Also write what was removed (sample-aligned, like the output) here: a file for one input, a folder for many."),
    ] = None,
    loudness: Annotated[
        Optional[float], typer.Option("--loudness", help="Bring the result to this integrated loudness, LUFS (-16 for speech online), true peak at most -1 dBTP.")
    ] = None,
    method: Annotated[Optional[Method], typer.Option("--method", help="Suppression method.")] = None,
    reduction_db: Annotated[Optional[float], typer.Option("--reduction-db", help="Largest reduction of any frequency, dB (more than 0, at most 120).")] = None,
    work: Annotated[Optional[Path], typer.Option("--work", help="Work folder (cache, reports).")] = None,
    task_runner: Annotated[
        Optional[TaskRunnerKind], typer.Option("--task-runner", help="Where the steps of many files run.")
    ] = None,
    dask_address: Annotated[
        Optional[str], typer.Option("--dask-address", help="Scheduler of an existing Dask cluster (with --task-runner dask).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Clean one file or many: one through the denoise-file flow, many in one denoise-files flow run.

    The steps of many files run at once on the task runner of the settings
    (runtime.task_runner: threads, or a Dask cluster).
    """
    from destatic.media import AUDIO_SUFFIXES

    _digest.prefetch(inputs)  # the work folders are named by content: hashed while the pipeline loads
    noise = _noise_overrides(noise_start, noise_end, noise_file, profile, profile_file)
    if output is not None and len(inputs) == 1 and output.suffix.lower() in AUDIO_SUFFIXES and not output.is_dir():
        audio_only = True
        format = format or output.suffix.lower().lstrip(".")
    settings = _settings(
        config,
        output={"mode": "audio" if audio_only or format else None, "format": format, "loudness_lufs": loudness},
        noise=noise,
        suppression={"method": method, "reduction_db": reduction_db},
        paths={"work": work},
        runtime={"task_runner": task_runner, "dask_address": dask_address},
    )
    targets = _outputs(inputs, output, settings)
    residues = _residues(inputs, residue, settings)
    _check_before_running(inputs, [*zip(inputs, targets), *zip(inputs, residues or [])], settings)
    if settings.runtime.shortcut and _answered_before(inputs, targets, residues, settings):
        return

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    # No heartbeat thread: it only detects crashed runs of deployments, and
    # each flow run would wait for it at exit.
    from prefect import tags

    from destatic.flows import run_tags

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), _prefect_api(settings) as embedded, tags(*run_tags(settings)):
        if len(inputs) == 1:
            failed, flow_runs = _run_one(inputs[0], targets[0], settings, residue=residues[0] if residues else None)
        else:
            failed, flow_runs = _run_many(inputs, targets, settings, residues=residues)
        if embedded:
            _settle(flow_runs)
    if failed:
        console.print(f"{failed} of {len(inputs)} file(s) failed")
        raise typer.Exit(EXIT_FAILED)


def _residues(inputs: list[Path], residue: Path | None, settings: Any) -> list[Path] | None:
    """Where each input's residue goes: the file --residue names (one input), or NAME-residue.EXT in its folder."""
    from destatic.workspace import default_output

    if residue is None:
        return None
    if len(inputs) == 1 and not residue.is_dir():
        return [residue]
    if residue.exists() and not residue.is_dir():
        raise typer.BadParameter(f"--residue {str(residue)!r} must be a folder for {len(inputs)} inputs")
    return [residue / f"{source.stem}-residue{default_output(source, settings).suffix}" for source in inputs]


def _check_before_running(inputs: list[Path], outputs: list[tuple[Path, Path]], settings: Any) -> None:
    """Refuse what would fail late (exit 2): an output name that does not fit, a noise stretch past an input's end, a saved profile that does not fit an input."""
    from destatic import media, steps
    from destatic.workspace import check_output

    try:
        for source, target in outputs:
            check_output(source, target, settings)
    except ParameterError as error:
        raise typer.BadParameter(str(error)) from None
    start = settings.noise.start_s if settings.noise.mode == "segment" else None
    saved = settings.noise.profile_file
    for source in inputs if start is not None or saved is not None else ():
        try:
            info = media.probe(source)
            stream = info.default_audio_stream
        except DestaticError:
            continue  # the run reports what is wrong with it
        if start is not None and info.duration is not None and start >= info.duration:
            raise typer.BadParameter(f"--noise-start {start:g} s is past the end of {source.name} ({info.duration:g} s long)")
        if saved is not None and stream is not None:
            try:
                steps.profile.saved_profile(saved, sample_rate=stream.sample_rate or 0, channels=stream.channels or 1, method=settings.suppression.method)
            except ParameterError as error:
                raise typer.BadParameter(f"{source.name}: {error}") from None


def _answered_before(inputs: list[Path], targets: list[Path], residues: list[Path] | None, settings: Any) -> bool:
    """Deliver again, without Prefect, what earlier runs made for exactly these requests; False (nothing done) unless all were.

    See :mod:`destatic.shortcut`: a changed input, setting or version, or an
    evicted artifact, takes the flow.
    """
    from destatic import cache, shortcut, steps
    from destatic.workspace import work_dir_for

    try:
        answers = []
        for index, (source, target) in enumerate(zip(inputs, targets)):
            residue = residues[index] if residues else None
            work_dir = work_dir_for(source, settings)
            answer = shortcut.recall(work_dir, shortcut.request_key(source, settings, output=target, residue=residue))
            if answer is None:
                return False
            answers.append((answer, target, residue))
        for (encoded, residue_encoded), target, residue in answers:
            steps.deliver.run(steps.Encoded(encoded), target.absolute())
            if residue is not None and residue_encoded is not None:
                steps.deliver.run(steps.Encoded(residue_encoded), residue.absolute())
            cache.mark_used([encoded, *([residue_encoded] if residue_encoded else [])])
    except (OSError, DestaticError):
        return False  # the flow will say what is wrong, or do it again
    _show_answered(inputs, settings)
    for target in targets:
        typer.echo(str(target.absolute()))
    return True


def _show_answered(inputs: list[Path], settings: Any) -> None:
    """Tell a Prefect server that runs already (none is started for this) about the requests answered from the work folder."""
    from destatic import server
    from destatic.dsp.choices import resolve_method
    from destatic.workspace import report_key, work_dir_for

    api_url = server.known_api_url(settings.runtime.server)
    if api_url is None:
        return
    for source in inputs:
        report_md = work_dir_for(source, settings) / "report.md"
        report = (report_key(source), report_md.read_text(encoding="utf-8")) if report_md.is_file() else None
        server.record_answered_run(
            api_url,
            name=f"denoise-{source.name}",
            parameters={"path": str(source.absolute())},
            tags=["destatic", resolve_method(settings.suppression.method), "cached"],
            report=report,
        )


@contextlib.contextmanager
def _progress_bars(sources: list[Path], settings: Any) -> Iterator[None]:
    """A rich progress bar per input, moved by its steps as they report (tasks in this process)."""
    from destatic import tasks
    from destatic.workspace import work_dir_for

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bars:
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


@contextlib.contextmanager
def _prefect_api(settings: Any) -> Iterator[bool]:
    """The Prefect API for the flows of a command (see :mod:`destatic.server`); yields whether it is Prefect's temporary server."""
    from destatic import server

    with contextlib.ExitStack() as stack:
        try:
            where = stack.enter_context(server.prefect_api(settings.runtime.server))
        except DestaticError as error:  # the background server would not start
            console.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
        console.print(f"[dim]{where}[/dim]", highlight=False)
        yield where == server.EMBEDDED


def _settle(flow_runs: list[Any]) -> None:
    """Before Prefect's temporary server stops at exit, let it record every task run's last state."""
    from destatic import server

    if not server.settle_task_runs(flow_runs):
        console.print("[dim]some task runs may show as unfinished in the Prefect UI[/dim]")


def _run_one(source: Path, target: Path, settings: Any, *, residue: Path | None) -> tuple[int, list[Any]]:
    """Clean one file through the denoise-file flow; the number of failures (0 or 1) and the flow run."""
    from destatic.flows import denoise_file
    from destatic.runners import task_runner_for

    with _progress_bars([source], settings):
        on_runner = denoise_file.with_options(task_runner=task_runner_for(settings.runtime))
        state = on_runner(source, settings, output=target, residue=residue, quarantine_bad=False, return_state=True)
    flow_runs = [state.state_details.flow_run_id]
    try:
        written = state.result()
    except DestaticError as error:
        console.print(f"[red]failed:[/red] {error}", highlight=False)
        return 1, flow_runs
    except Exception as error:
        console.print(f"[red]failed:[/red] {source}: {type(error).__name__}: {error}", highlight=False)
        return 1, flow_runs
    typer.echo(str(written))
    return 0, flow_runs


def _run_many(inputs: list[Path], targets: list[Path], settings: Any, *, residues: list[Path] | None) -> tuple[int, list[Any]]:
    """Clean many files in one denoise-files flow run on the configured task runner; the number of failures and the flow run."""
    from destatic.flows import run_batch

    runner = settings.runtime.task_runner + (f" at {settings.runtime.dask_address}" if settings.runtime.dask_address else "")
    console.print(f"cleaning {len(inputs)} files ({runner})", highlight=False)
    with _progress_bars(inputs, settings):
        rows = run_batch(inputs, settings, outputs=targets, residues=residues)
    for row in rows:
        if row["status"] == "done":
            typer.echo(row["output"])
        else:
            console.print(f"[red]failed:[/red] {row['file']}: {row['reason']} (step {row['step']})", highlight=False)
    return sum(row["status"] != "done" for row in rows), sorted({row["flow_run"] for row in rows if row.get("flow_run")})


@app.command()
def watch(
    inbox: Annotated[Optional[Path], typer.Argument(file_okay=False, help="Folder to watch (default: settings).")] = None,
    outbox: Annotated[Optional[Path], typer.Option("--outbox", file_okay=False, help="Where results go.")] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between scans.")] = None,
    stable: Annotated[Optional[float], typer.Option("--stable", help="Seconds a file must stay unchanged.")] = None,
    once: Annotated[bool, typer.Option("--once", metavar="", help="Scan once, process, exit.")] = False,
    dispatch: Annotated[
        Optional[Dispatch],
        typer.Option("--dispatch", help="inline: clean here; deployment: one run of --deployment per file, for workers."),
    ] = None,
    deployment: Annotated[
        Optional[str], typer.Option("--deployment", help="Per-file deployment FLOW/NAME (default denoise-file/destatic).")
    ] = None,
    profile_file: ProfileFileOption = None,
    config: ConfigOption = None,
) -> None:
    """Watch an inbox folder: serve the scheduled watcher, or scan once."""
    settings = _settings(
        config,
        noise={"profile_file": profile_file},
        paths={"inbox": inbox, "outbox": outbox},
        watch={
            "interval_s": interval,
            "stable_s": stable,
            "dispatch": dispatch,
            "deployment": deployment,
        },
    )
    if not settings.paths.inbox.is_dir():
        raise typer.BadParameter(f"inbox {str(settings.paths.inbox)!r} is not a folder")
    from destatic.flows import serve_watcher, watch_inbox

    try:
        with _prefect_api(settings) as embedded:
            if not once:
                how = "a plain loop on Prefect's temporary server" if embedded else "served as deployment watch-inbox/destatic-watch"
                if settings.watch.dispatch == "deployment":
                    how += f", each file to {settings.watch.deployment}"
                console.print(f"watching {settings.paths.inbox} every {settings.watch.interval_s} s ({how}; Ctrl+C stops)")
                serve_watcher(settings)
                return
            state = watch_inbox(settings, return_state=True)
            if embedded:
                _settle([state.state_details.flow_run_id])
            rows = state.result()
    except DestaticError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    table = Table("file", "status", "seconds", "output or reason")
    for row in rows:
        table.add_row(row["file"], row["status"], f"{row['seconds']:.2f}", row["output"] or row["reason"])
    console.print(table if rows else "nothing to do")
    if any(row["status"] == "failed" for row in rows):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option("--pool", help="The work pool (prefect work-pool create POOL --type process).")],
    inbox: Annotated[Optional[Path], typer.Argument(file_okay=False, help="Folder to watch (default: settings).")] = None,
    outbox: Annotated[Optional[Path], typer.Option("--outbox", file_okay=False, help="Where results go.")] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between scans.")] = None,
    stable: Annotated[Optional[float], typer.Option("--stable", help="Seconds a file must stay unchanged.")] = None,
    name: Annotated[str, typer.Option("--name", help="Per-file deployment name; the watcher's is NAME-watch.")] = "destatic",
    config: ConfigOption = None,
) -> None:
    """Deploy the per-file flow and the scheduled watcher to a work pool of the Prefect server at PREFECT_API_URL.

    The watcher (watch-inbox/NAME-watch) claims files and starts one run of
    denoise-file/NAME per file; the pool's workers take them. Folders are
    stored absolute: every worker must see them at the same paths.
    """
    settings = _settings(
        config,
        paths={"inbox": inbox, "outbox": outbox},
        watch={"interval_s": interval, "stable_s": stable},
    )
    from destatic.flows import deploy_to_pool

    try:
        with _prefect_api(settings):
            deployed = deploy_to_pool(settings, pool=pool, name=name)
    except DestaticError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for deployment_name, deployment_id in deployed.items():
        typer.echo(f"{deployment_name}  {deployment_id}")
    console.print(f"watching {settings.paths.inbox.absolute()} every {settings.watch.interval_s} s on pool {pool!r}")


@app.command("profile")
def profile_command(
    input: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Video or audio file.")],
    save: Annotated[Optional[Path], typer.Option("--save", help="Save the profile (.npz).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Plot the profile (.png).")] = None,
    noise_start: NoiseStart = None,
    noise_end: NoiseEnd = None,
    noise_file: NoiseFile = None,
    profile: ProfileOption = None,
    config: ConfigOption = None,
) -> None:
    """Estimate the noise profile of a file; save and plot it."""
    settings = _settings(config, noise=_noise_overrides(noise_start, noise_end, noise_file, profile))
    from destatic import steps

    with tempfile.TemporaryDirectory(prefix="destatic-profile-") as scratch:
        try:
            with console.status(f"reading {input.name}"):
                audio = steps.extract.run(input, Path(scratch) / "audio.wav")
                noise_audio = None
                if settings.noise.mode == "file":
                    noise_audio = steps.extract.run(settings.noise.file, Path(scratch) / "noise.wav")
                noise_profile = steps.profile.estimate_file_profile(audio, settings.noise, noise_audio=noise_audio)
        except DestaticError as error:
            console.print(f"[red]failed:[/red] {error}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
    if save is not None:
        noise_profile.save(save)
        typer.echo(f"profile: {save}")
    if plot is not None:
        steps.report.plot_profile(noise_profile, plot)
        typer.echo(f"plot: {plot}")
    typer.echo(f"{input.name}: {noise_profile.mode} profile, {noise_profile.sample_rate} Hz, "
               f"{noise_profile.channels} channel(s), {noise_profile.bins} bins")


@app.command()
def artifacts(
    input: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A file run before.")],
    work: Annotated[Optional[Path], typer.Option("--work", help="Work folder (default: settings).")] = None,
    config: ConfigOption = None,
) -> None:
    """Show where the last run's artifacts of a file are."""
    settings = _settings(config, paths={"work": work})
    from destatic.steps.report import LAST_RUN
    from destatic.workspace import work_dir_for

    record_path = work_dir_for(input, settings) / LAST_RUN
    if not record_path.is_file():
        console.print(f"no run of {input} recorded: there is no {record_path}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    work_dir = Path(record["work_dir"])
    typer.echo(f"work folder: {work_dir}")
    typer.echo(f"report:      {record['report']}")
    typer.echo(f"output:      {record['output']}")
    typer.echo(f"flow run:    {record['flow_run_id']}")
    typer.echo(f"artifact:    {record['artifact_key']}  (prefect artifact inspect {record['artifact_key']})")
    for path in sorted(work_dir.iterdir()):
        typer.echo(f"  {path.name}")


cache_app = typer.Typer(help="The work folder's cache: its size, entries and budget; prune or clear it.", no_args_is_help=False)
app.add_typer(cache_app, name="cache")
WorkOption = Annotated[Optional[Path], typer.Option("--work", help="Work folder (default: settings).")]


def _megabytes(size: int) -> str:
    return f"{size / 1024**2:,.1f} MB"


@cache_app.callback(invoke_without_command=True)
def cache_show(ctx: typer.Context, work: WorkOption = None, config: ConfigOption = None) -> None:
    """Show the work folder's size, budget and entries (files' folders, least recently used first)."""
    if ctx.invoked_subcommand is not None:
        return
    from destatic import cache

    settings = _settings(config, paths={"work": work})
    folder = settings.paths.work.resolve()
    found = cache.entries(folder)
    budget = cache.budget_bytes(folder, settings.cache.max_gb)
    typer.echo(f"work folder: {folder}")
    typer.echo(f"size:        {_megabytes(sum(entry.size for entry in found))} in {len(found)} entries; budget {_megabytes(budget)} (cache.max_gb)")
    table = Table("folder", "size", "step artifacts", "last used")
    by_folder: dict[Path, list[Any]] = {}
    for entry in found:
        by_folder.setdefault(entry.folder, []).append(entry)
    for name, members in sorted(by_folder.items(), key=lambda item: max(entry.last_used for entry in item[1])):
        last = max(entry.last_used for entry in members)
        when = datetime.fromtimestamp(last).isoformat(sep=" ", timespec="seconds") if last else "-"
        sets = sum(entry.step != "folder" for entry in members)
        table.add_row(name.name, _megabytes(sum(entry.size for entry in members)), str(sets), when)
    if by_folder:
        Console().print(table)


@cache_app.command("prune")
def cache_prune(
    to: Annotated[Optional[float], typer.Option("--to", min=0, help="Size to prune to, GB (default: the budget, cache.max_gb).")] = None,
    work: WorkOption = None,
    config: ConfigOption = None,
) -> None:
    """Evict the least recently used entries until the work folder fits the budget (or --to)."""
    from destatic import cache

    settings = _settings(config, paths={"work": work})
    folder = settings.paths.work.resolve()
    pruned = cache.prune(folder, cache.budget_bytes(folder, settings.cache.max_gb if to is None else to))
    typer.echo(f"{folder}: {_megabytes(pruned.size_before)} -> {_megabytes(pruned.size_after)} "
               f"({len(pruned.removed)} entries evicted; budget {_megabytes(pruned.budget)})")


@cache_app.command("clear")
def cache_clear(work: WorkOption = None, config: ConfigOption = None) -> None:
    """Evict every entry of the work folder that no run is using."""
    from destatic import cache

    settings = _settings(config, paths={"work": work})
    folder = settings.paths.work.resolve()
    pruned = cache.clear(folder)
    typer.echo(f"{folder}: {_megabytes(pruned.size_before)} -> {_megabytes(pruned.size_after)} ({len(pruned.removed)} entries evicted)")


server_app = typer.Typer(help="destatic's own Prefect server, started in the background and reused by every command.")
app.add_typer(server_app, name="server")


def _describe_server(found: Any) -> str:
    up = time.time() - found.started
    return (f"API {found.api_url}, UI {found.ui_url} (pid {found.pid}, Prefect {found.prefect_version}, "
            f"up {up / 60:.0f} min); database in {found.prefect_home}, log {found.log}")


@server_app.command("status")
def server_status() -> None:
    """Whether destatic's background Prefect server runs, and where its UI is (exit 1 if not)."""
    from destatic import server

    found = server.find(any_version=True)
    if found is None:
        typer.echo(f"destatic's Prefect server is not running (its state is kept in {server.state_folder()})")
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"running: {_describe_server(found)}")


@server_app.command("start")
def server_start() -> None:
    """Start destatic's background Prefect server (every command starts it anyway when none runs)."""
    from destatic import server

    try:
        found, started = server.start()
    except DestaticError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"{'started' if started else 'already running'}: {_describe_server(found)}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop destatic's background Prefect server (its runs and artifacts stay in its database)."""
    from destatic import server

    stopped = server.stop()
    typer.echo("stopped" if stopped is not None else "destatic's Prefect server was not running")


def main() -> None:
    """Entry point of ``destatic``: run the command, then end the process without tearing Python down.

    Once a command has finished, the exit handlers run (Prefect drains its
    event and log queues, an embedded server stops, temporary files go), the
    standard streams are flushed, and the process ends with the command's
    status. What is skipped is the interpreter's teardown of every loaded
    module, which costs about 0.4 s with Prefect and matplotlib loaded and
    changes no file. An exception other than an exit is left to Python.
    """
    try:
        app(prog_name="destatic")
        status: Any = 0
    except SystemExit as stop:
        status = stop.code
    if status is None:
        status = 0
    elif not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    # What Python does at exit, in its order, without the module teardown after
    # it. No public API runs either step on its own: threading._shutdown runs
    # the threading exit hooks (concurrent.futures joins its idle workers there)
    # and joins the threads that are not daemons; then the atexit handlers.
    # tests/pipeline/test_cli.py::test_main_runs_exit_handlers_and_keeps_the_status pins both.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
