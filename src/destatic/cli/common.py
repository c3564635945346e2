"""What every command shares: the typer app, the console, exit statuses, common options, building the settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer carries its own click

from destatic import __version__
from destatic.dsp import ProfileMode
from destatic.errors import DestaticError, ParameterError

class CommandGroup(typer.core.TyperGroup):
    """Typer's command group, whose commands' ``--help`` shows no ``<bool>`` type (Typer labels its own flag so)."""

    def get_help_option(self, ctx: Any) -> Any:
        return _untyped(super().get_help_option(ctx))

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None and not isinstance(command, CommandGroup):
            _untyped(command.get_help_option(ctx))  # made once and kept by the command
        return command


def _untyped(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


app = typer.Typer(
    cls=CommandGroup,
    name="destatic",
    help="Remove steady background noise (hiss, hum, fans, static) from videos and recordings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
EXIT_FAILED = 1
EXIT_USAGE = 2


def prefect_environment() -> None:
    """Prefect defaults for a command line run, set before Prefect is imported (the user's environment wins).

    The embedded server may need more than Prefect's 20 s to start (database
    migrations on a first run, a busy machine); no telemetry. Prefect's home
    (``~/.prefect`` by default) and matplotlib's configuration folder
    (``~/.config/matplotlib``) move into destatic's own state and cache
    folders, so that a command writes nothing else under the home folder.
    """
    from destatic.server import client_home
    from destatic.settings import user_cache_folder

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not os.environ.get("PREFECT_HOME"):
        home = client_home()
        home.mkdir(parents=True, exist_ok=True)  # Prefect makes the last folder only
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("MPLCONFIGDIR", str(user_cache_folder() / "matplotlib"))
    os.environ.setdefault(CONSOLE_LOG_LEVEL, "CRITICAL")


CONSOLE_LOG_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
"""Prefect's console handler: its log lines go to the server (the UI's logs) and, with ``--verbose``, to the console too."""
Verbose = Annotated[
    bool, typer.Option("--verbose", metavar="", help="Also print Prefect's log lines here (they always go to its log, in the UI).")
]


def show_prefect_log_lines(verbose: bool) -> None:
    """With `verbose`, Prefect's log lines are printed on the console too; call before Prefect is imported."""
    if verbose:
        os.environ[CONSOLE_LOG_LEVEL] = "NOTSET"


def results_in_work_folder(settings: Any) -> dict[str, str]:
    """Prefect's result storage in the work folder, under its budget (:mod:`destatic.cache`), not in ``$PREFECT_HOME``.

    The steps' records go there anyway; this also places the records Prefect
    writes for a failed flow run. Set in this process and in the environment
    its children inherit (served runs, Dask workers, ``destatic prefect worker``).
    """
    from destatic.cache import RESULTS

    folder = str(settings.paths.work.resolve() / RESULTS)
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = folder
    return {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": folder}


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
    prefect_environment()


def noise_overrides(
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


def usage_error(error: ClickException) -> int:
    """Say a usage error as every refusal of destatic is said, ``error: ...`` on one line with where to look; its exit status.

    Click's own errors (a missing argument, an unknown option, a file that
    does not exist) and the commands' refusals then read alike.
    """
    context = getattr(error, "ctx", None)
    if isinstance(error, NoArgsIsHelpError):
        typer.echo(error.format_message(), err=True)
        return error.exit_code
    message = error.message if isinstance(error, typer.BadParameter) and error.param is None else error.format_message()
    message = message.replace(": Value error, ", ": ")  # pydantic's preamble, as the settings' own messages drop it
    where = f" (see {context.command_path} --help)" if context is not None else ""
    console.print(f"[red]error:[/red] {' '.join(message.split())}{where}", highlight=False, soft_wrap=True)
    return error.exit_code


def settings_from(config: Path | None, **overrides: Any) -> Any:
    from destatic.settings import load_settings

    try:
        return load_settings(config=config, **overrides)
    except ParameterError as error:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None




@contextlib.contextmanager
def prefect_api(settings: Any, *, must_answer: bool = False) -> Iterator[bool]:
    """The Prefect API for the flows of a command (see :mod:`destatic.server`); yields whether it is Prefect's temporary server.

    With `must_answer`, a server named by ``PREFECT_API_URL`` that does not
    answer ends the command with one line saying so (the watcher waits for
    it instead: :mod:`destatic.outage`).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    from destatic import outage, server

    configured = PREFECT_API_URL.value()
    if must_answer and configured and not outage.answers(configured):
        console.print(
            f"[red]error:[/red] the Prefect API at {configured} (PREFECT_API_URL) does not answer: start that server, "
            "or leave PREFECT_API_URL unset to use destatic's own",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED)

    with contextlib.ExitStack() as stack:
        folder = results_in_work_folder(settings)["PREFECT_RESULTS_LOCAL_STORAGE_PATH"]
        stack.enter_context(temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: folder}))
        try:
            where = stack.enter_context(server.prefect_api(settings.runtime.server))
        except DestaticError as error:  # the background server would not start
            console.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
        console.print(f"[dim]{where}[/dim]", highlight=False)
        yield where == server.EMBEDDED


def settle(flow_runs: list[Any]) -> None:
    """Before Prefect's temporary server stops at exit, let it record every task run's last state."""
    from destatic import server

    if not server.settle_task_runs(flow_runs):
        console.print("[dim]some task runs may show as unfinished in the Prefect UI[/dim]")
