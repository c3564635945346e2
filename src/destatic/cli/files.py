"""``destatic profile``, ``artifacts`` and ``cache``: a file's noise profile, its last run's files, the work folder."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Column, Table

from destatic.cli.common import (
    EXIT_FAILED,
    CommandGroup,
    ConfigOption,
    NoiseEnd,
    NoiseFile,
    NoiseStart,
    ProfileOption,
    app,
    console,
    noise_overrides,
    settings_from,
)
from destatic.errors import DestaticError


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
    settings = settings_from(config, noise=noise_overrides(noise_start, noise_end, noise_file, profile))
    from destatic import steps

    with tempfile.TemporaryDirectory(prefix="destatic-profile-") as scratch:
        try:
            with console.status(f"reading {input.name}"):
                audio = steps.extract.run(input, Path(scratch) / "audio.wav")
                noise_audio = None
                if settings.noise.mode == "file":
                    noise_audio = steps.extract.run(settings.noise.file, Path(scratch) / "noise.wav")
                noise_profile = steps.profile.estimate_file_profile(
                    audio, settings.noise.request(None), noise_audio=noise_audio, noise_file=settings.noise.file
                )
        except DestaticError as error:
            console.print(f"[red]failed:[/red] {error}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
    if save is not None:
        noise_profile.save(save)
        typer.echo(f"profile: {save}")
    if plot is not None:
        steps.plots.plot_profile(noise_profile, plot)
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
    settings = settings_from(config, paths={"work": work})
    from destatic.steps.report_page import LAST_RUN
    from destatic.workspace import work_dir_for

    record_path = work_dir_for(input, settings) / LAST_RUN
    if not record_path.is_file():
        console.print(f"no run of {input} recorded: there is no {record_path}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    work_dir = Path(record["work_dir"])
    typer.echo(f"work folder: {work_dir}")
    typer.echo(f"report:      {record['report']}")
    if record.get("report_html"):
        typer.echo(f"listen:      {record['report_html']}")
    typer.echo(f"output:      {record['output']}")
    typer.echo(f"flow run:    {record['flow_run_id']}")
    typer.echo(f"artifact:    {record['artifact_key']}  (destatic prefect artifact inspect {record['artifact_key']})")
    for path in sorted(work_dir.iterdir()):
        typer.echo(f"  {path.name}")


cache_app = typer.Typer(cls=CommandGroup, help="The work folder's cache: its size, entries and budget; prune or clear it.", no_args_is_help=False)
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

    settings = settings_from(config, paths={"work": work})
    folder = settings.paths.work.resolve()
    found = cache.entries(folder)
    budget = cache.budget_bytes(folder, settings.cache.max_gb)
    typer.echo(f"work folder: {folder}")
    typer.echo(f"size:        {_megabytes(sum(entry.size for entry in found))} in {len(found)} entries; budget {_megabytes(budget)} (cache.max_gb)")
    by_folder: dict[Path, list[Any]] = {}
    for entry in found:
        by_folder.setdefault(entry.folder, []).append(entry)
    table = Table("size", "step artifacts", "last used")
    table.columns.insert(0, Column("folder", no_wrap=True, min_width=max((len(name.name) for name in by_folder), default=6)))
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

    settings = settings_from(config, paths={"work": work})
    folder = settings.paths.work.resolve()
    pruned = cache.prune(folder, cache.budget_bytes(folder, settings.cache.max_gb if to is None else to))
    typer.echo(f"{folder}: {_megabytes(pruned.size_before)} -> {_megabytes(pruned.size_after)} "
               f"({len(pruned.removed)} entries evicted; budget {_megabytes(pruned.budget)})")


@cache_app.command("clear")
def cache_clear(work: WorkOption = None, config: ConfigOption = None) -> None:
    """Evict every entry of the work folder that no run is using."""
    from destatic import cache

    settings = settings_from(config, paths={"work": work})
    folder = settings.paths.work.resolve()
    pruned = cache.clear(folder)
    typer.echo(f"{folder}: {_megabytes(pruned.size_before)} -> {_megabytes(pruned.size_after)} ({len(pruned.removed)} entries evicted)")


