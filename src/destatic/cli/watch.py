"""``destatic watch`` and ``destatic deploy``: the scheduled inbox watcher, here or on a work pool."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from destatic.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigOption,
    ProfileFileOption,
    Verbose,
    app,
    console,
    prefect_api,
    settings_from,
    settle,
    show_prefect_log_lines,
)
from destatic.errors import DestaticError
from destatic.settings import Dispatch, EventsMode, is_url


@app.command()
def watch(
    inbox: Annotated[Optional[str], typer.Argument(help="Folder or s3://bucket/prefix/ to watch (default: settings).")] = None,
    outbox: Annotated[Optional[str], typer.Option("--outbox", help="Where results go (a folder or s3:// URL).")] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between scans.")] = None,
    stable: Annotated[Optional[float], typer.Option("--stable", help="Seconds a file must stay unchanged.")] = None,
    once: Annotated[bool, typer.Option("--once", metavar="", help="Scan once, process, exit.")] = False,
    events: Annotated[
        Optional[EventsMode],
        typer.Option("--events", help="Local inbox: start a scan as soon as a file settles (auto: unless on a network mount)."),
    ] = None,
    dispatch: Annotated[
        Optional[Dispatch],
        typer.Option("--dispatch", help="inline: clean here; deployment: one run of --deployment per file, for workers."),
    ] = None,
    deployment: Annotated[
        Optional[str], typer.Option("--deployment", help="Per-file deployment FLOW/NAME (default denoise-file/destatic).")
    ] = None,
    profile_file: ProfileFileOption = None,
    config: ConfigOption = None,
    verbose: Verbose = False,
) -> None:
    """Watch an inbox folder: serve the scheduled watcher, or scan once.

    One line per file taken and per file finished goes to standard output.
    """
    show_prefect_log_lines(verbose)
    settings = settings_from(
        config,
        noise={"profile_file": profile_file},
        paths={"inbox": inbox, "outbox": outbox},
        watch={
            "interval_s": interval,
            "stable_s": stable,
            "events": events,
            "dispatch": dispatch,
            "deployment": deployment,
        },
    )
    if is_url(settings.paths.inbox):
        _check_store(settings)
    elif not settings.paths.inbox.is_dir():
        raise typer.BadParameter(f"inbox {str(settings.paths.inbox)!r} is not a folder")
    elif once:
        _wait_for_settling_files(settings)
    from destatic.flows import scan_once, serve_watcher

    try:
        with prefect_api(settings) as embedded:
            if not once:
                how = "a plain loop on Prefect's temporary server" if embedded else "served as deployment watch-inbox/destatic-watch"
                if settings.watch.dispatch == "deployment":
                    how += f", each file to {settings.watch.deployment}"
                line = f"watching {settings.paths.inbox} every {settings.watch.interval_s} s ({how}; Ctrl+C stops)"
                serve_watcher(settings, ready=lambda: console.print(line))
                return
            state = scan_once(settings)
            if embedded:
                settle([state.state_details.flow_run_id])
            rows = state.result()
    except DestaticError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    table = Table("file", "status", "seconds", "speech quality", "output or reason")
    for row in rows:
        quality = row.get("speech_quality")
        shown = "-" if quality is None else f"{quality:.2f}" + (" listen" if row.get("needs_listening") else "")
        table.add_row(row["file"], row["status"], f"{row['seconds']:.2f}", shown, row["output"] or row["reason"])
    console.print(table if rows else "nothing to do")
    if any(row["status"] == "failed" for row in rows):
        raise typer.Exit(EXIT_FAILED)


def _check_store(settings: Any) -> None:
    """Fail at once, in one line, when an s3:// inbox cannot be used: no s3 extra, endpoint unreachable, credentials refused."""
    from destatic import store

    try:
        store.check_access(store.open_store(str(settings.paths.inbox), settings))
    except DestaticError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


SETTLING_WAIT_S = 60.0
"""Longest ``watch --once`` waits, beyond ``watch.stable_s``, for files still being written."""


def _wait_for_settling_files(settings: Any) -> None:
    """Before ``watch --once`` scans: wait until the files still being written (or settling) are ready, within a bound.

    A file is taken once it has not changed for ``watch.stable_s``; a scan
    right after files were dropped in would otherwise take none of them.
    Files still changing after :data:`SETTLING_WAIT_S` are left for the
    next scan, and the command to run it is printed.
    """
    from destatic import inbox

    folder = settings.paths.inbox
    stable_s = settings.watch.stable_s
    deadline = time.monotonic() + stable_s + SETTLING_WAIT_S
    told = False
    while True:
        settling = set(inbox.find_ready(folder, stable_s=0.0)) - set(inbox.find_ready(folder, stable_s=stable_s))
        if not settling:
            return
        if time.monotonic() > deadline:
            again = shlex.join(["destatic", *sys.argv[1:]]) if sys.argv[1:2] == ["watch"] else f"destatic watch {shlex.quote(str(folder))} --once"
            console.print(f"{len(settling)} file(s) still being written, left for the next scan: run `{again}` again",
                          highlight=False, soft_wrap=True)
            return
        if not told:
            console.print(f"waiting for {len(settling)} file(s) still being written or settling (unchanged for watch.stable_s = {stable_s:g} s)",
                          highlight=False, soft_wrap=True)
            told = True
        time.sleep(min(1.0, max(0.1, stable_s / 5)))


@app.command()
def deploy(
    pool: Annotated[str, typer.Option("--pool", help="The work pool (see --create-pool).")],
    inbox: Annotated[Optional[Path], typer.Argument(file_okay=False, help="Folder to watch (default: settings).")] = None,
    outbox: Annotated[Optional[Path], typer.Option("--outbox", file_okay=False, help="Where results go.")] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between scans.")] = None,
    stable: Annotated[Optional[float], typer.Option("--stable", help="Seconds a file must stay unchanged.")] = None,
    name: Annotated[str, typer.Option("--name", help="Per-file deployment name; the watcher's is NAME-watch.")] = "destatic",
    create_pool: Annotated[bool, typer.Option("--create-pool", metavar="", help="Create the pool (type process) if the server has none of that name.")] = False,
    config: ConfigOption = None,
) -> None:
    """Deploy the per-file flow and the scheduled watcher to a work pool of the Prefect server (PREFECT_API_URL, else destatic's own).

    The watcher (watch-inbox/NAME-watch) claims files and starts one run of
    denoise-file/NAME per file; the pool's workers take them. Folders are
    stored absolute: every worker must see them at the same paths.
    """
    settings = settings_from(
        config,
        paths={"inbox": inbox, "outbox": outbox},
        watch={"interval_s": interval, "stable_s": stable},
    )
    from destatic.flows import deploy_to_pool

    try:
        with prefect_api(settings, must_answer=True):
            deployed = deploy_to_pool(settings, pool=pool, name=name, create_pool=create_pool)
    except DestaticError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    from destatic.flows.deploy import CRASHED_RUNS, SILENCE_S

    automation = deployed.pop(CRASHED_RUNS)
    for deployment_name, deployment_id in deployed.items():
        typer.echo(f"{deployment_name}  {deployment_id}")
    typer.echo(f"automation {CRASHED_RUNS}  {automation}")
    console.print(f"watching {settings.paths.inbox.absolute()} every {settings.watch.interval_s} s on pool {pool!r}")
    console.print(
        f"start each worker with `PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 destatic prefect worker start --pool {pool}` (a run whose "
        f"worker dies is scheduled again after {SILENCE_S} s without a heartbeat)",
        highlight=False,
        soft_wrap=True,
    )


