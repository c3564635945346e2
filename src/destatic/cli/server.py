"""``destatic server``: destatic's own Prefect server in the background."""

from __future__ import annotations

import time
from typing import Any

import typer

from destatic.cli.common import EXIT_FAILED, app, console
from destatic.errors import DestaticError


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


