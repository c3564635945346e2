"""Task runners: threads in one process, or a Dask cluster across cores or machines.

:func:`build_task_runner` is the one place that turns the ``runtime.task_runner``
setting into a Prefect task runner. The Dask runner makes sure every Dask
worker talks to the same Prefect API as the flow: a worker without
``PREFECT_API_URL`` would start a temporary server of its own and leave it
running after the cluster is gone.
"""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from destatic._cpus import available_cpus
from destatic.errors import DestaticError, ParameterError
from destatic.settings import RuntimeSettings, TaskRunnerKind

__all__ = ["build_task_runner", "task_runner_for"]


def build_task_runner(
    kind: TaskRunnerKind,
    *,
    dask_address: str | None = None,
    dask_workers: int = 2,
) -> TaskRunner[Any]:
    """Build the task runner that a flow's steps run on.

    Parameters
    ----------
    kind : {"thread", "dask"}
        ``"thread"``: a thread pool in the flow's own process. ``"dask"``: a
        Dask cluster (requires the ``dask`` extra: ``pip install destatic[dask]``).
    dask_address : str or None
        Address of a running Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
        ``None``: start a local cluster for the flow run and stop it after.
        Only for ``kind="dask"``.
    dask_workers : int > 0
        Worker processes of the local cluster, one thread each (DSP holds the
        GIL only briefly, but ffmpeg and numpy scale better across processes).
        Ignored when ``dask_address`` is given.

    Returns
    -------
    TaskRunner
        A new, unstarted task runner: pass it to ``flow.with_options(task_runner=...)``.

    Raises
    ------
    ParameterError
        On an unknown ``kind``, ``dask_workers < 1``, or an address given for threads.
    DestaticError
        ``kind="dask"`` without prefect-dask installed.
    """
    if kind not in ("thread", "dask"):
        raise ParameterError(f"kind={kind!r} must be 'thread' or 'dask'")
    if isinstance(dask_workers, bool) or not isinstance(dask_workers, int) or dask_workers < 1:
        raise ParameterError(f"dask_workers={dask_workers!r} must be a positive integer")
    if kind == "thread":
        if dask_address is not None:
            raise ParameterError(f"dask_address={dask_address!r} needs kind='dask', not 'thread'")
        return ThreadPoolTaskRunner()
    try:
        from destatic._dask import SharedApiDaskTaskRunner
    except ImportError:  # the optional "dask" extra is not installed
        raise DestaticError("kind='dask' needs prefect-dask: pip install 'destatic[dask]'") from None
    if dask_address is not None:
        if not dask_address.strip():
            raise ParameterError(f"dask_address={dask_address!r} must be a scheduler address like 'tcp://host:8786'")
        return SharedApiDaskTaskRunner(address=dask_address)
    return SharedApiDaskTaskRunner(
        cluster_kwargs={
            "n_workers": dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": ":0",
        }
    )


def task_runner_for(runtime: RuntimeSettings) -> TaskRunner[Any]:
    """The task runner that the ``runtime`` settings name (:func:`build_task_runner` of them).

    ``runtime.dask_workers`` None means one worker process per CPU this process may use.
    """
    return build_task_runner(
        runtime.task_runner, dask_address=runtime.dask_address, dask_workers=runtime.dask_workers or available_cpus()
    )


def __getattr__(name: str) -> Any:
    # prefect-dask (and distributed) load only when a Dask runner is wanted: 0.25 s off every start.
    if name in ("SharedApiDaskTaskRunner", "current_api_url"):
        from destatic import _dask

        return getattr(_dask, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
