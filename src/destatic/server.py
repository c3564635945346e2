"""The Prefect server the command line talks to: yours, destatic's own in the background, or Prefect's temporary one.

``PREFECT_API_URL`` (environment or Prefect profile) always wins. Without it,
``runtime.server = "background"`` (the default) has the first command start a
local Prefect server in the background, with its state in destatic's own
folder, and every later command find it and reuse it: a command then costs
no server start (about 8 s each with Prefect's temporary server).
``"embedded"`` keeps Prefect's temporary server, one per command.

Finding the background server needs only the standard library: its record
(``server.json``: URL, pid, port, Prefect version) names it, its process
must still be a Prefect server and its ``/api/health`` must answer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import platformdirs

from destatic.errors import DestaticError
from destatic.media.atomic import process_alive

__all__ = [
    "BackgroundServer", "api_answers", "client_home", "find", "owns", "prefect_api", "prefect_command_environment",
    "revive", "settle_task_runs", "start", "start_temporary", "state_folder", "stop",
]

HOST = "127.0.0.1"
PREFERRED_PORT = 4200
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0
SETTLE_TIMEOUT_S = 5.0
EMBEDDED = "Prefect's temporary server"
LEASES_ON_DISK = "prefect.server.concurrency.lease_storage.filesystem"


def state_folder() -> Path:
    """Where the background server keeps its record, log and database: ``$XDG_STATE_HOME/destatic/server``."""
    return Path(platformdirs.user_state_dir("destatic", appauthor=False)) / "server"


def client_home() -> Path:
    """``PREFECT_HOME`` of destatic's commands when the user sets none: ``$XDG_STATE_HOME/destatic/prefect``, not ``~/.prefect``.

    The temporary server (``runtime.server = "embedded"``) keeps its database there.
    """
    return state_folder().parent / "prefect"


@dataclass(frozen=True)
class BackgroundServer:
    """destatic's background Prefect server, as its record names it."""

    api_url: str
    ui_url: str
    pid: int
    port: int
    prefect_home: str
    prefect_version: str
    started: float
    log: str


def _healthy(port: int, timeout: float = 1.0) -> bool:
    return api_answers(f"http://{HOST}:{port}/api", timeout=timeout)


def _is_prefect_server(pid: int) -> bool:
    """Whether `pid` is (still) a Prefect server, not a process that reused its number."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return process_alive(pid)  # no /proc: the pid and the health check must do
    return b"prefect" in command and b"server" in command


def _record() -> BackgroundServer | None:
    try:
        return BackgroundServer(**json.loads((state_folder() / "server.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def find(*, any_version: bool = False) -> BackgroundServer | None:
    """The background server, if it runs, is a Prefect server of this Prefect version and answers; else None."""
    server = _record()
    if server is None or not (process_alive(server.pid) and _is_prefect_server(server.pid)):
        return None
    if not any_version and server.prefect_version != version("prefect"):
        return None
    return server if _healthy(server.port) else None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One command at a time starts or stops the server; the others wait, then find it."""
    folder = state_folder()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "server.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port(preferred: int | None) -> int:
    """`preferred` if nothing listens there, else a free port the kernel picks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket: a killed server's port is free
        try:
            probe.bind((HOST, preferred or 0))
        except OSError:
            probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _spawn(port: int, home: Path, log: Path) -> subprocess.Popen[bytes]:
    """``prefect server start`` on `port` in a session of its own, its UI told where its API is, its leases on disk."""
    environment = {name: value for name, value in os.environ.items() if name not in ("PREFECT_API_URL", "PREFECT_UI_API_URL")}
    environment.update(
        PREFECT_HOME=str(home),
        PREFECT_UI_API_URL=f"http://{HOST}:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Concurrency leases on disk, not in memory: a run holding one (the watcher's scan) outlives a restart of the server.
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=LEASES_ON_DISK,
    )
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port), "--analytics-off", "--no-prompt"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=home,
        )


def _end(pid: int) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and process_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _launch(port: int, timeout: float) -> BackgroundServer | None:
    """Spawn the server on `port` and record it once it answers; None if it exited first (the port taken, say)."""
    folder = state_folder()
    home, log = folder / "prefect", folder / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    process, deadline = _spawn(port, home, log), time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if _healthy(port, timeout=0.5):
            server = BackgroundServer(
                api_url=f"http://{HOST}:{port}/api", ui_url=f"http://{HOST}:{port}", pid=process.pid, port=port,
                prefect_home=str(home), prefect_version=version("prefect"), started=time.time(), log=str(log),
            )
            (folder / "server.json").write_text(json.dumps(asdict(server), indent=2), encoding="utf-8")
            return server
        time.sleep(0.2)
    if process.poll() is None:
        _end(process.pid)
        raise DestaticError(f"the background Prefect server did not answer within {timeout:g} s; see {log}")
    return None


def _end_stale(server: BackgroundServer | None) -> None:
    """End a recorded server process that still runs but does not answer (or is of another Prefect version)."""
    if server is not None and process_alive(server.pid) and _is_prefect_server(server.pid):
        _end(server.pid)


def start(*, port: int | None = PREFERRED_PORT, timeout: float = START_TIMEOUT_S) -> tuple[BackgroundServer, bool]:
    """Start the background server, unless it runs already; return it and whether it was started now.

    Raises
    ------
    DestaticError
        It did not answer within `timeout` seconds, or exited (its log says why).
    """
    with _locked():
        running = find()
        if running is not None:
            return running, False
        _end_stale(_record())
        for _ in range(3):  # a port found free can be taken before the server binds it
            server = _launch(_free_port(port), timeout)
            if server is not None:
                return server, True
            port = None
        raise DestaticError(f"the background Prefect server exited at start; see {state_folder() / 'server.log'}")


def owns(api_url: str) -> bool:
    """Whether `api_url` is destatic's background server's (its record names it), so destatic may start it again."""
    recorded = _record()
    return recorded is not None and recorded.api_url.rstrip("/") == api_url.rstrip("/")


def api_answers(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at `api_url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def revive(api_url: str) -> bool:
    """Start destatic's background server again on the port it had, if `api_url` is its and it does not answer.

    Every process that was told its URL (the watcher, its flow runs) finds it
    there again. Whether the API at `api_url` answers now; False for a server
    destatic does not own (never started here) or one that could not start.
    """
    if api_answers(api_url):
        return True
    with _locked():
        recorded = _record()
        if recorded is None or recorded.api_url.rstrip("/") != api_url.rstrip("/"):
            return False
        if find(any_version=True) is not None:  # another process was first
            return True
        _end_stale(recorded)
        try:
            return _launch(recorded.port, START_TIMEOUT_S) is not None
        except DestaticError:
            return False


def stop() -> BackgroundServer | None:
    """Stop the background server; what it was, or None if none ran."""
    with _locked():
        server = _record()
        with contextlib.suppress(FileNotFoundError):
            (state_folder() / "server.json").unlink()
        if server is None or not (process_alive(server.pid) and _is_prefect_server(server.pid)):
            return None
        _end(server.pid)
        return server


@contextlib.contextmanager
def prefect_api(kind: str) -> Iterator[str]:
    """Point the Prefect calls in the block at the API to use; yield a line saying which.

    Parameters
    ----------
    kind : {"background", "embedded"}
        ``runtime.server``. A configured ``PREFECT_API_URL`` wins over either.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield f"Prefect server at {configured}"
        return
    if kind == "embedded":
        start_temporary()
        yield EMBEDDED
        return
    server, started = start()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield f"destatic's Prefect server{' (started)' if started else ''}, UI {server.ui_url}"


def start_temporary() -> str:
    """Start Prefect's temporary server now, as the first Prefect call would; return its API URL.

    Prefect starts it in a thread of its own, where no SIGTERM or Ctrl-C
    can land between the server's process starting and Prefect recording
    it (its exit handler would then not know the server, which would
    outlive the command). An interrupt ends the wait at once: the server is
    stopped as soon as Prefect has it, and the interrupt goes on. Starting
    it again is a no-op.

    Raises
    ------
    DestaticError
        The server did not start.
    """
    from prefect.server.api.server import SubprocessASGIServer

    temporary = SubprocessASGIServer()
    failed: list[Exception] = []

    def start() -> None:
        try:
            temporary.start()
        except Exception as error:  # handed to the caller, or moot once it was interrupted
            failed.append(error)

    starting = threading.Thread(target=start, name="destatic-temporary-server", daemon=True)
    starting.start()
    try:
        starting.join()
    except BaseException:
        while starting.is_alive() and temporary.server_process is None:
            time.sleep(0.01)
        temporary.stop()
        raise
    if failed:
        raise DestaticError(f"Prefect's temporary server did not start: {failed[0]}")
    return temporary.api_url


def prefect_command_environment(kind: str) -> dict[str, str]:
    """The environment for a ``prefect`` command (a child process) to reach the server destatic's commands use.

    A configured ``PREFECT_API_URL`` (environment or Prefect profile), or
    ``kind="embedded"`` (Prefect's temporary server reads the same
    ``PREFECT_HOME``), leave the environment as it is. Otherwise
    (``"background"``) the background server is found, or started, and
    named.

    Raises
    ------
    DestaticError
        The background server would not start.
    """
    from prefect.settings import PREFECT_API_URL

    environment = dict(os.environ)
    if PREFECT_API_URL.value() or kind == "embedded":
        return environment
    server, _ = start()
    environment["PREFECT_API_URL"] = server.api_url
    return environment


def settle_task_runs(flow_run_ids: Sequence[Any]) -> bool:
    """Wait until the server has recorded a final state for every task run of these flow runs.

    Task-run states reach the server as events, recorded one by one; Prefect's
    temporary server is stopped at exit, and an event still being recorded
    then is lost, with a traceback on the terminal. Call this after the flows,
    before the process ends, when that server is in use. Public APIs only: the
    events worker's drain, then the task runs read back.

    Returns
    -------
    bool
        False if some were not final within :data:`SETTLE_TIMEOUT_S`.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    ids = [run_id for run_id in flow_run_ids if run_id is not None]
    if not ids:
        return True
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    EventsWorker.drain_all(timeout=SETTLE_TIMEOUT_S)
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
            if all(run.state is not None and run.state.is_final() for run in runs):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
