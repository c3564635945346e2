"""The ``watch-inbox`` flow: one scan of the inbox, run on a schedule; and how it is served.

Each scan claims the inbox's stable files (:mod:`destatic.inbox`) and has
each one cleaned by a run of ``denoise-file``: here (``watch.dispatch =
"inline"``), or by the workers of a Prefect server (``"deployment"``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, tags
from prefect.artifacts import create_table_artifact

from destatic import inbox, outage, server
from destatic.errors import DestaticError, causes, display_path, reason_of
from destatic.flows.denoise import OUTPUTS_KEY, denoise_file, keep_the_budget, run_tags
from destatic.flows.graph import FINISHED
from destatic.flows.logs import quiet_destatic_tracebacks
from destatic.flows.store_watch import scan_store
from destatic.settings import Settings, is_url, load_settings

__all__ = [
    "SETTLED_EVENT",
    "WATCHING_EVENT",
    "process_claim",
    "report_dispatched",
    "run_is_over",
    "say_outcome",
    "scan_once",
    "serve_watcher",
    "settled_trigger",
    "watch_inbox",
    "watcher_deployment",
]


def run_is_over(flow_run_id: str) -> bool:
    """Whether a flow run is in a final state (or unknown to the server)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except ObjectNotFound:
        return True
    return state is not None and state.is_final()


def _current_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _clean_through_outages(taken: inbox.Claim, settings: Settings) -> Path:
    """Run denoise_file on a claim; while the Prefect API is unreachable, keep the claim, wait for the API, run it again.

    An outage is never the file's failure. A run that settled its file
    (delivered, the original in ``done/``) and then could not record its
    state is done: that is logged, not raised.
    """
    api_url, pause = _current_api_url(), outage.FIRST_WAIT_S
    while True:
        outage.wait_for_api(api_url)
        try:
            with tags(*run_tags(settings)):
                return denoise_file.with_options(flow_run_name=inbox.run_name(taken))(taken.folder, settings)
        except Exception as error:
            if not outage.api_unreachable(error) or _file_error(error) is not None:
                raise
            delivered = inbox.delivered(taken, settings)
            if delivered is not None:
                get_run_logger().warning("%s done; its run's last state was not recorded: the Prefect API is unreachable", display_path(taken.relative))
                return delivered
            get_run_logger().info("%s waits for the Prefect API (%s), still claimed", display_path(taken.relative), type(error).__name__)
        time.sleep(pause)
        pause = min(pause * 2, outage.LONGEST_WAIT_S)


def _file_error(error: BaseException) -> DestaticError | None:
    """The destatic error (the file's own failure) in `error`'s chain, if any: an outage met while reporting it does not hide it."""
    return next((current for current in causes(error) if isinstance(current, DestaticError)), None)


def say_outcome(row: dict[str, Any]) -> None:
    """One line on standard output for a file a scan took or finished, so that a watcher's console says what it does.

    Printed, not logged: Prefect's log lines stay in its log (and the UI); a
    served scan's output reaches the ``destatic watch`` console.
    """
    name = display_path(row["file"])
    if row["status"] == "taken":
        line = f"taken: {name}"
    elif row["status"] == "failed":
        line = f"failed: {name}: {row['reason']}"
    else:
        quality = row.get("speech_quality")
        scored = "" if quality is None else f", speech quality {quality:.2f}" + (" needs listening" if row.get("needs_listening") else "")
        line = f"{row['status']}: {name} -> {display_path(row['output'])} ({row['seconds']:.1f} s{scored})"
    print(line, flush=True)


def process_claim(taken: inbox.Claim, settings: Settings, *, announce: bool = True) -> dict[str, Any]:
    """Clean a claimed file in this process (``watch.dispatch="inline"``): one run of denoise_file, run again after an outage.

    With `announce` false its outcome line is left to the caller (an object
    store's scan says it once the outcome is carried back to the store).
    """
    started = time.perf_counter()
    row: dict[str, Any] = {"file": str(taken.relative), "status": "failed", "output": "", "seconds": 0.0, "reason": ""}
    failure: Exception | None = None
    try:
        output = _clean_through_outages(taken, settings)
    except Exception as error:  # the watcher goes on past any file
        failure = error
    else:
        summary = FINISHED.pop(str(output), {})
        row.update(status="done", output=str(output), speech_quality=summary.get("speech_quality"),
                   needs_listening=summary.get("needs_listening", False))
    unsettled = failure or DestaticError("the run ended without settling the file")
    outcome = inbox.give_back(taken, settings, unsettled)  # only if the run ended before settling it
    if outcome is not None:
        get_run_logger().error("%s", outcome)
        failure = unsettled
        row.update(status="failed", output="")
    row["seconds"] = round(time.perf_counter() - started, 2)
    if failure is not None:
        row["reason"] = reason_of(failure)
    if announce:
        say_outcome(row)
    return row


def _dispatch_claim(taken: inbox.Claim, settings: Settings, parameters: dict[str, Any]) -> dict[str, Any]:
    """Start a run of the per-file deployment for a claimed file (``watch.dispatch="deployment"``).

    The claim then belongs to that run (:func:`destatic.inbox.hand_over`):
    the run settles the file and releases the claim, and
    :func:`destatic.inbox.release_stale_claims` gives the file back only
    once the run is over without having done so.
    """
    from prefect.deployments import run_deployment

    started = time.perf_counter()
    row: dict[str, Any] = {"file": str(taken.relative), "status": "failed", "output": "", "seconds": 0.0, "reason": ""}
    try:
        flow_run = run_deployment(
            settings.watch.deployment,
            parameters={"path": str(taken.folder), "settings": parameters},
            flow_run_name=inbox.run_name(taken),
            timeout=0,
            tags=run_tags(settings),
        )
    except Exception as error:
        inbox.unclaim(taken)
        row["reason"] = f"not dispatched, left in the inbox: {reason_of(error)}"
    else:
        inbox.hand_over(taken, str(flow_run.id))
        inbox.record_dispatch(taken, str(flow_run.id), inbox.outbox_path(taken.relative, settings))
        row.update(status="dispatched", output=str(inbox.outbox_path(taken.relative, settings)), flow_run=flow_run.name, flow_run_id=str(flow_run.id))
    row["seconds"] = round(time.perf_counter() - started, 2)
    say_outcome(row)
    return row


def _run_summary(client: Any, flow_run_id: str) -> dict[str, Any]:
    """The summary a file run published (output, speech quality, ...), read back from its outputs artifact; {} if none."""
    from uuid import UUID

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    found = client.read_artifacts(artifact_filter=ArtifactFilter(
        key=ArtifactFilterKey(any_=[OUTPUTS_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    for artifact in found:
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        if data:
            return dict(data[0])
    return {}


def _dispatched_outcome(client: Any, flow_run_id: str, record: dict[str, str]) -> dict[str, Any] | None:
    """The row of a dispatched file whose run is over: done with its speech quality, or failed with the run's message.

    None while the run goes on; {} for a run that crashed or was cancelled
    (its claim is given back to the inbox by the sweep, the file taken again:
    not its failure).
    """
    from prefect.exceptions import ObjectNotFound

    row: dict[str, Any] = {"file": record["file"], "status": "failed", "output": "", "seconds": 0.0, "reason": "", "flow_run_id": flow_run_id}
    try:
        run = client.read_flow_run(flow_run_id)
    except ObjectNotFound:
        return {**row, "reason": "its run is no longer on the Prefect server"}
    if run.state is None or not run.state.is_final():
        return None
    if run.state.is_crashed() or run.state.is_cancelled():
        return {}
    row.update(seconds=round(run.total_run_time.total_seconds(), 2), flow_run=run.name)
    if run.state.is_completed():
        summary = _run_summary(client, flow_run_id)
        return {**row, "status": "done", "output": record["output"],
                "speech_quality": summary.get("speech_quality"), "needs_listening": summary.get("needs_listening", False)}
    return {**row, "reason": _failure_reason(run.state.message or run.state.name, record)}


def _failure_reason(message: str, record: dict[str, str]) -> str:
    """A failed run's state message as the file's reason: without Prefect's preamble, the claim's internal path, or a bad input's own name."""
    message = " ".join(message.split()).removeprefix("Flow run encountered an exception: ")
    return display_path(record["file"]).join(message.removeprefix(f"BadInputError: {record['claimed']}: ").split(record["claimed"]))


def report_dispatched(settings: Settings) -> list[dict[str, Any]]:
    """Rows (and console lines) for the files handed to workers whose runs have ended since the last scan, each reported once.

    The score travels with the file's run (its outputs artifact), so it is
    shown wherever the run ran. A Prefect API that does not answer leaves
    the records for a later scan.
    """
    from prefect import get_client

    folder = settings.paths.inbox.absolute()
    runs = inbox.dispatched_runs(folder)
    if not runs:
        return []
    rows = []
    try:
        with get_client(sync_client=True) as client:
            for flow_run_id, record in runs.items():
                row = _dispatched_outcome(client, flow_run_id, record)
                if row is not None and inbox.forget_dispatch(folder, flow_run_id) and row:
                    say_outcome(row)
                    rows.append(row)
    except Exception as error:
        if not outage.api_unreachable(error):
            raise
    return rows


def check_deployment(settings: Settings) -> None:
    """Fail with a clear message when the per-file deployment ``watch.deployment`` is not on the server."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    name = settings.watch.deployment
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        flow_name, _, deployment_name = name.partition("/")
        remedy = (f"create it with `destatic deploy --pool {deployment_name} --create-pool --name {deployment_name} "
                  f"{shlex.quote(str(settings.paths.inbox.absolute()))}`" if flow_name == "denoise-file" else "deploy it")
        raise DestaticError(
            f"watch.deployment={name!r} is not a deployment of the Prefect server at {client.api_url}: "
            f"{remedy}, or set watch.dispatch='inline'"
        ) from None


def _sweep(settings: Settings) -> None:
    """Before a scan: give back dead owners' claims, delete dead processes' temporary files, forget old failures."""
    logger = get_run_logger()
    folder = settings.paths.inbox.absolute()
    for relative in inbox.release_stale_claims(folder, run_is_over=run_is_over):
        logger.warning("put back %s, claimed by a process or run that is gone", relative)
    for path in inbox.remove_dead_partials(settings.paths.outbox.absolute(), settings.paths.work.absolute()):
        logger.warning("deleted %s, left half-written by a process that is gone", path)
    inbox.forget_stale_records(folder)


@flow(name="watch-inbox", log_prints=False)
def watch_inbox(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Scan the inbox once: claim every stable file, have it cleaned, settled in the outbox and ``done/``.

    With ``watch.dispatch="inline"`` the files are cleaned here, one run of
    :func:`~destatic.flows.denoise_file` each (``watch.concurrency`` at once).
    With ``"deployment"`` each claimed file is handed to a run of the per-file
    deployment ``watch.deployment``, for a worker to take, and the scan ends
    without waiting. Either way the result goes to the outbox under the same
    relative path, and the others go on past a file that fails: bad input is
    quarantined with its reason; after any other failure the file is left in
    the inbox, not taken again for ``watch.retry_after_s``, and quarantined
    at its ``watch.max_attempts``-th failure. A table artifact lists what
    this scan did.

    Returns
    -------
    list of dict
        One row per file handed earlier to a run of the per-file deployment
        whose run has ended since (done with its speech quality, or failed),
        then one per file taken: file, status (done, failed, dispatched),
        output, seconds, reason (and flow_run when dispatched).
    """
    quiet_destatic_tracebacks()
    outage.quiet_prefect_transport_errors()
    settings = settings or load_settings()
    logger = get_run_logger()
    if is_url(settings.paths.inbox):
        rows = scan_store(settings, process_claim, say_outcome)
        if rows:
            create_table_artifact(rows, key="destatic-watch", description=f"destatic watch of {settings.paths.inbox}")
        keep_the_budget(settings)
        return rows
    folder = settings.paths.inbox.absolute()
    if not folder.is_dir():
        raise DestaticError(f"inbox {str(folder)!r} is not a folder")
    dispatch = settings.watch.dispatch == "deployment"
    if dispatch:
        check_deployment(settings)
    _sweep(settings)
    finished = report_dispatched(settings)
    ready, waiting = inbox.ready_files(folder, settings)
    if waiting:
        logger.info("%d file(s) left alone until watch.retry_after_s has passed since they failed: %s",
                    len(waiting), ", ".join(display_path(relative) for relative in waiting[:10]))
    claims = [taken for relative in ready if (taken := inbox.claim(folder, relative, stable_s=settings.watch.stable_s)) is not None]
    logger.info("%d file(s) taken from %s", len(claims), folder)
    for taken in claims:
        say_outcome({"file": str(taken.relative), "status": "taken"})
    if dispatch:
        parameters = settings.to_parameters()
        rows = [_dispatch_claim(taken, settings, parameters) for taken in claims]
    elif settings.watch.concurrency == 1 or len(claims) <= 1:
        rows = [process_claim(taken, settings) for taken in claims]
    else:
        with ThreadPoolExecutor(settings.watch.concurrency) as pool:
            futures = [pool.submit(contextvars.copy_context().run, process_claim, taken, settings) for taken in claims]
            rows = [future.result() for future in futures]
    rows = finished + rows
    if rows:
        create_table_artifact(rows, key="destatic-watch", description=f"destatic watch of {folder}")
    keep_the_budget(settings)
    return rows


def serve_watcher(settings: Settings, ready: Callable[[], None] = lambda: None) -> None:
    """Run :func:`watch_inbox` every ``settings.watch.interval_s`` seconds (blocks); call `ready` once watching.

    With a Prefect server (``PREFECT_API_URL`` set) the flow is served as the
    ``watch-inbox/destatic-watch`` deployment on an interval schedule, visible
    and controllable in the UI; with ``watch.dispatch="deployment"`` its scans
    hand the files to the workers of the per-file deployment. Prefect's
    embedded server does not run the scheduler, so without one the scans are
    started by a plain loop here, and `ready` is called once that server
    answers and the notifications run (starting it takes 5 to 25 s), just
    before the first scan.

    Raises
    ------
    DestaticError
        ``watch.dispatch="deployment"`` without a server, or without the per-file deployment on it.
    """
    from prefect.settings import PREFECT_API_URL

    if settings.watch.dispatch == "deployment":
        if not PREFECT_API_URL.value():
            raise DestaticError("watch.dispatch='deployment' needs a Prefect server with workers: set PREFECT_API_URL")
        check_deployment(settings)
    if PREFECT_API_URL.value():
        with _scans_on_events(settings, scan_here=True):
            ready()
            _serve_through_outages(settings, PREFECT_API_URL.value())
        return
    with _scans_on_events(settings, scan_here=False) as wake:
        server.start_temporary()
        ready()
        while True:
            started = time.monotonic()
            wake.event.clear()
            watch_inbox(settings, return_state=True)
            wake.announce()
            wake.event.wait(max(0.0, settings.watch.interval_s - (time.monotonic() - started)))


SETTLED_EVENT = "destatic.file.settled"
"""The Prefect event a watcher emits for each file of its inbox that settled (see :mod:`destatic.notify`)."""
WATCHING_EVENT = "destatic.inbox.watching"
"""The Prefect event a watcher emits when it starts watching a local inbox by notifications."""


def _emit(event: str, folder: Path, path: Path | None = None) -> None:
    """Emit `event` about a file of the inbox `folder` (or the inbox itself); best effort: the scans do not depend on it."""
    from prefect.events import emit_event

    inbox_resource = {"prefect.resource.id": f"destatic.inbox.{folder}", "prefect.resource.name": display_path(folder)}
    with contextlib.suppress(Exception):
        if path is None:
            emit_event(event=event, resource=inbox_resource)
        else:
            emit_event(event=event, resource={"prefect.resource.id": f"destatic.file.{path}", "prefect.resource.name": display_path(path.name)},
                       related=[{**inbox_resource, "prefect.resource.role": "inbox"}])


class _Wake:
    """What notifications tell the scans: an event set when files settled, and those files, announced after the scan."""

    def __init__(self, folder: Path | None) -> None:
        self.event = threading.Event()
        self.folder = folder
        self._settled: list[Path] = []
        self._lock = threading.Lock()

    def settled(self, paths: list[Path]) -> None:
        with self._lock:
            self._settled.extend(paths)
        self.event.set()

    def announce(self) -> None:
        """Emit :data:`SETTLED_EVENT` for the files that settled since the last call (after the scan: it waits for nothing)."""
        with self._lock:
            paths, self._settled = self._settled, []
        for path in paths:
            _emit(SETTLED_EVENT, self.folder, path)


@contextlib.contextmanager
def _scans_on_events(settings: Settings, *, scan_here: bool) -> Iterator[_Wake]:
    """While the block runs, set the event of the :class:`_Wake` it yields as soon as a file of a local inbox settles (``watch.events``).

    With `scan_here` a thread of this process also runs a scan each time
    (the served watcher's scheduled scans run in other processes, seconds
    away); otherwise the caller's loop waits on the event. An inbox on
    object storage, or ``watch.events`` off or not working there, gives an
    event never set: scans only. Prefect's flow engine and events client are
    loaded first, here: loaded by the first scan, they took seconds (and
    the import lock) on a loaded machine.
    """
    from destatic import notify

    folder = settings.paths.inbox
    if is_url(folder) or not notify.events_work(Path(folder), settings.watch.events):
        yield _Wake(None)
        return
    import prefect.flow_engine  # noqa: F401

    folder = Path(folder).absolute()
    wake = _Wake(folder)
    _emit(WATCHING_EVENT, folder)
    stopped = threading.Event()

    def scan_when_woken() -> None:
        while not stopped.is_set():
            if wake.event.wait(0.5):
                wake.event.clear()
                watch_inbox(settings, return_state=True)
                wake.announce()

    with notify.SettleWatch(folder, settings.watch.stable_s, wake.settled):
        # The thread runs in this context: the Prefect API of the command is a context setting (prefect_api).
        context = contextvars.copy_context()
        scanner = threading.Thread(target=context.run, args=(scan_when_woken,), name="destatic-event-scans", daemon=True) if scan_here else None
        if scanner is not None:
            scanner.start()
        try:
            yield wake
        finally:
            stopped.set()


API_CHECK_EVERY_S = 2.0
"""How often the served watcher checks that its Prefect API answers."""


def _say(line: str) -> None:
    """One line on the watcher's console (standard error), with the time."""
    print(f"{time.strftime('%H:%M:%S')} destatic watch: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _keeping_the_api(api_url: str, folder: Path | str, say: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, check the API every :data:`API_CHECK_EVERY_S`; when it is gone, say so, bring it back
    (destatic's own server) or wait for it (yours), and say when it answers again, with the files waiting."""
    stopped = threading.Event()

    def keep() -> None:
        while not stopped.wait(API_CHECK_EVERY_S):
            outage.wait_for_api(api_url, say=say, waiting=None if is_url(folder) else lambda: inbox.pending(Path(folder)))

    outage.quiet_prefect_transport_errors()
    keeper = threading.Thread(target=keep, name="destatic-api-keeper", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stopped.set()


def scan_once(settings: Settings) -> Any:
    """One scan of the inbox (``destatic watch --once``), its final state returned.

    With a Prefect server it is kept as the served watcher keeps it: one line
    when the API goes away (destatic's own server is started again), one when
    it answers again, each with the files waiting.
    """
    api_url = _current_api_url()
    if api_url is None:
        return watch_inbox(settings, return_state=True)
    with _keeping_the_api(api_url, settings.paths.inbox, _say):
        return watch_inbox(settings, return_state=True)


def _serve_through_outages(settings: Settings, api_url: str, say: Callable[[str], None] = _say) -> None:
    """Serve the watcher deployment; should Prefect's runner give up during a long outage, wait for the API and serve again."""
    from prefect import serve

    with _keeping_the_api(api_url, settings.paths.inbox, say), outage.quiet_service_summaries():
        first = True
        while True:
            outage.wait_for_api(api_url)
            try:
                serve(watcher_deployment(settings), print_starting_message=first)
                return
            except Exception as error:  # the runner stops after 3 failed polls in a row
                if not outage.runner_gave_up(error) and server.api_answers(api_url):
                    raise
            first = False


def settled_trigger(settings: Settings) -> Any:
    """A deployment trigger: a scan as soon as :data:`SETTLED_EVENT` is emitted for a file of this (local) inbox.

    Any ``destatic watch`` of the inbox with notifications on (one on the
    machine that holds the disk, say) emits those events; the server then
    starts the watcher deployment at once instead of at its next interval.
    """
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="destatic-file-settled",
        match={"prefect.resource.id": "destatic.file.*"},
        match_related={"prefect.resource.id": f"destatic.inbox.{Path(settings.paths.inbox).absolute()}", "prefect.resource.role": "inbox"},
        expect={SETTLED_EVENT},
    )


def watcher_deployment(settings: Settings, *, name: str = "destatic-watch", module_entrypoint: bool = False, on_events: bool = False) -> Any:
    """The scheduled watcher as a deployment: every ``watch.interval_s`` seconds, one scan at a time.

    Parameters
    ----------
    settings : Settings
        Given to every scan, its folders made absolute.
    name : str
        Deployment name (``watch-inbox/<name>``).
    module_entrypoint : bool
        Load the flow as ``destatic.flows.watch.watch_inbox`` from the
        installed package (for a work pool) instead of from this file.
    on_events : bool
        Also start a scan on each :data:`SETTLED_EVENT` of a local inbox (:func:`settled_trigger`).

    Returns
    -------
    prefect.deployments.runner.RunnerDeployment
    """
    from prefect.types.entrypoint import EntrypointType

    return watch_inbox.to_deployment(
        name=name,
        interval=settings.watch.interval_s,
        parameters={"settings": settings.to_parameters()},
        concurrency_limit=1,
        entrypoint_type=EntrypointType.MODULE_PATH if module_entrypoint else EntrypointType.FILE_PATH,
        triggers=[settled_trigger(settings)] if on_events and not is_url(settings.paths.inbox) else None,
    )
