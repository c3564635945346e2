"""``destatic server`` (destatic's own Prefect server in the background) and ``destatic prefect`` (a prefect command against it)."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any, Optional

import typer

from destatic.cli.common import EXIT_FAILED, CommandGroup, app, console, results_in_work_folder, settings_from
from destatic.errors import DestaticError


server_app = typer.Typer(cls=CommandGroup, help="destatic's own Prefect server, started in the background and reused by every command.")
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

def _only_asks_for_help(arguments: list[str]) -> bool:
    """Whether a prefect command line only asks for help (no command, or ``--help`` before any ``--``): it needs no server."""
    options = arguments[:arguments.index("--")] if "--" in arguments else arguments
    return not options or "--help" in options


@app.command(
    "prefect",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
def prefect_command(
    arguments: Annotated[Optional[list[str]], typer.Argument(metavar="PREFECT-ARGS...", help="A prefect command and its options.")] = None,
) -> None:
    """Run a prefect command against the Prefect server destatic uses (its own, started if need be).

    For example `destatic prefect artifact inspect KEY`, `destatic prefect
    work-pool create POOL --type process`, `destatic prefect worker start
    --pool POOL`. With PREFECT_API_URL set, that server. The prefect
    command replaces this process.
    """
    from destatic import server

    settings = settings_from(None)
    arguments = arguments or []
    try:
        reaches_server = not _only_asks_for_help(arguments)
        environment = {**(server.prefect_command_environment(settings.runtime.server) if reaches_server else dict(os.environ)),
                       **results_in_work_folder(settings)}
    except DestaticError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    # prefect takes this process's place: signals (a worker's SIGTERM), standard input and the status are its own.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, [sys.executable, "-m", "prefect", *arguments], environment)
