"""Deployments on a work pool: the per-file flow, and the scheduled watcher that hands files to it."""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta
from typing import Any

from destatic.errors import DestaticError
from destatic.flows.denoise import denoise_file
from destatic.flows.watch import watcher_deployment
from destatic.settings import Settings

__all__ = ["CRASHED_RUNS", "crashed_run_automation", "deploy_to_pool", "ensure_crashed_run_automation"]

CRASHED_RUNS = "destatic-crashed-runs"
"""The automation that runs again the flow runs whose worker died (the same one ``scripts/cluster/cluster.sh`` makes)."""
SILENCE_S = 90
"""Seconds without a heartbeat after which a running flow run counts as crashed (workers beat every 30 s)."""
_STILL_ALIVE = (
    "prefect.flow-run.heartbeat",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
)


def crashed_run_automation(silence_s: int = SILENCE_S) -> Any:
    """The automation (not saved): a flow run silent for `silence_s` seconds, running or never started, is scheduled again.

    A worker killed with its run (a machine lost, ``kill -9``) leaves the run
    Running for ever: its heartbeats stop, and nothing else would notice. A
    run a worker took while the API or its database was down can stay
    Pending for ever: its process died before it could start, and the
    worker could not record the crash.
    """
    from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType

    return Automation(
        name=CRASHED_RUNS,
        description=f"Run again the flow runs not started, or whose heartbeats stopped, for {silence_s} s (their worker is gone)",
        enabled=True,
        trigger=EventTrigger(
            posture=Posture.Proactive,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            after={"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
            expect={*_STILL_ALIVE, "prefect.flow-run.Running"},
            for_each={"prefect.resource.id"},
            threshold=1,
            within=timedelta(seconds=silence_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", message=f"Not started or no heartbeat for {silence_s} s: its worker is gone")],
    )


def _comparable(value: Any) -> Any:
    """An automation's fields as the API returns them: sets come back as lists, in any order."""
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_comparable(item) for item in value]
        return sorted(items) if all(isinstance(item, str) for item in items) else items
    return value


def ensure_crashed_run_automation(silence_s: int = SILENCE_S) -> str:
    """Create the crashed-run automation, or bring the existing one up to date; ``"created"``, ``"updated"`` or ``"unchanged"``.

    Duplicates of its name (two deploys at once) are deleted but one.
    """
    from prefect import get_client
    from prefect.automations import Automation

    wanted = crashed_run_automation(silence_s)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=CRASHED_RUNS)
    if not existing:
        wanted.create()
        return "created"
    first, *duplicates = existing
    for duplicate in duplicates:
        Automation(**duplicate.model_dump()).delete()
    fields = {"name", "description", "enabled", "trigger", "actions", "actions_on_trigger", "actions_on_resolve"}
    current = Automation(**first.model_dump())
    if _comparable(current.model_dump(mode="json", include=fields)) == _comparable(wanted.model_dump(mode="json", include=fields)):
        return "unchanged"
    wanted.id = current.id
    wanted.update()
    return "updated"


def _create_process_pool(pool: str) -> None:
    """Create a work pool of type ``process`` named `pool` (another deploy making it at the same time is fine)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def deploy_to_pool(settings: Settings, *, pool: str, name: str = "destatic", create_pool: bool = False) -> dict[str, str]:
    """Deploy the per-file flow and the scheduled watcher to a work pool, the watcher dispatching to the other.

    Creates (or updates) ``denoise-file/<name>`` and ``watch-inbox/<name>-watch``
    on the server at ``PREFECT_API_URL``; the watcher scans on its interval
    and on each ``destatic.file.settled`` event of its inbox. Both load the flows from the
    installed ``destatic`` package, so every worker needs destatic installed,
    and the folders of `settings` on the same mount.

    Parameters
    ----------
    settings : Settings
        The watcher's settings; its ``watch.dispatch`` and ``watch.deployment``
        are set here to hand files to ``denoise-file/<name>``.
    pool : str
        The work pool: an existing one, or with `create_pool` a process pool made if missing.
    name : str
        Name of the per-file deployment.
    create_pool : bool
        Create the pool (type ``process``) when the server has none of that name.

    Returns
    -------
    dict
        Deployment name (``FLOW/DEPLOYMENT``) to its id, and ``CRASHED_RUNS``
        to what :func:`ensure_crashed_run_automation` did.

    Raises
    ------
    DestaticError
        No ``PREFECT_API_URL``, or the pool does not exist (and `create_pool` is false).
    """
    from prefect import deploy, get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from prefect.types.entrypoint import EntrypointType

    if not PREFECT_API_URL.value():
        raise DestaticError("deploying needs a Prefect server: set PREFECT_API_URL")
    try:
        with get_client(sync_client=True) as client:
            client.read_work_pool(pool)
    except ObjectNotFound:
        if not create_pool:
            raise DestaticError(
                f"work pool {pool!r} does not exist on the Prefect server at {PREFECT_API_URL.value()}: add --create-pool, "
                f"or create it with `destatic prefect work-pool create {pool} --type process`"
            ) from None
        _create_process_pool(pool)
    per_file = f"denoise-file/{name}"
    watch = settings.watch.model_copy(update={"dispatch": "deployment", "deployment": per_file})
    dispatching = settings.model_copy(update={"watch": watch})
    deployments = [
        denoise_file.to_deployment(name=name, entrypoint_type=EntrypointType.MODULE_PATH, tags=["destatic"]),
        watcher_deployment(dispatching, name=f"{name}-watch", module_entrypoint=True, on_events=True),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ids = deploy(*deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False, ignore_warnings=True)
    made = dict(zip((per_file, f"watch-inbox/{name}-watch"), (str(deployment_id) for deployment_id in ids)))
    return {**made, CRASHED_RUNS: ensure_crashed_run_automation()}
