"""``destatic watch`` and ``destatic deploy``: the scheduled inbox watcher, here or on a work pool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from destatic.cli.common import EXIT_FAILED, EXIT_USAGE, ConfigOption, ProfileFileOption, app, console, prefect_api, settings_from, settle
from destatic.errors import DestaticError
from destatic.settings import Dispatch


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
    settings = settings_from(
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
        with prefect_api(settings) as embedded:
            if not once:
                how = "a plain loop on Prefect's temporary server" if embedded else "served as deployment watch-inbox/destatic-watch"
                if settings.watch.dispatch == "deployment":
                    how += f", each file to {settings.watch.deployment}"
                console.print(f"watching {settings.paths.inbox} every {settings.watch.interval_s} s ({how}; Ctrl+C stops)")
                serve_watcher(settings)
                return
            state = watch_inbox(settings, return_state=True)
            if embedded:
                settle([state.state_details.flow_run_id])
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
        with prefect_api(settings):
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


