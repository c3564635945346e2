"""The task runners: validation, and real Dask clusters whose workers report to the flow's API."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from uuid import UUID

import psutil
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.testing.utilities import prefect_test_harness

from destatic.errors import ParameterError
from destatic.runners import build_task_runner

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
from destatic.runners import SharedApiDaskTaskRunner  # noqa: E402

SERVER_APP = "prefect.server.api.server:create_app"


def _server_processes() -> set[int]:
    """PIDs of Prefect servers started by this test process or its children."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if SERVER_APP in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(scope="module")
def harness() -> Iterator[str]:
    """The test server's API URL, with PREFECT_API_URL then cleared.

    The flow then finds the server the way a plain ``destatic run`` finds the
    embedded one (the harness registers its server as Prefect's temporary
    server), the case where a Dask worker left to itself would start its own.
    """
    with prefect_test_harness(server_startup_timeout=90):
        api_url = str(PREFECT_API_URL.value())
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            assert not PREFECT_API_URL.value()
            yield api_url


@task
def where_am_i(index: int) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url).rstrip("/")
    return {"index": index, "pid": os.getpid(), "api_url": api_url, "env_api_url": os.environ.get("PREFECT_API_URL")}


def _fan_out(count: int) -> list[dict[str, object]]:
    futures = [where_am_i.submit(index) for index in range(count)]
    return [future.result() for future in futures]


def _task_runs_of(flow_run_id: UUID, expected: int) -> list[object]:
    """The flow run's task runs on the server, once all are final (states arrive asynchronously)."""
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= expected and all(run.state and run.state.is_final() for run in runs):
                return runs
            if time.monotonic() > deadline:
                return runs
            time.sleep(0.2)


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("process", {}, "kind='process' must be 'thread' or 'dask'"),
        ("dask", {"dask_workers": 0}, "dask_workers=0 must be a positive integer"),
        ("dask", {"dask_workers": True}, "dask_workers=True must be a positive integer"),
        ("thread", {"dask_address": "tcp://127.0.0.1:8786"}, "needs kind='dask'"),
        ("dask", {"dask_address": " "}, "dask_address=' ' must be a scheduler address"),
    ],
)
def test_bad_arguments_say_what_is_allowed(kind: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_task_runner(kind, **kwargs)  # type: ignore[arg-type]


def test_kinds_build_the_matching_runner() -> None:
    assert isinstance(build_task_runner("thread"), ThreadPoolTaskRunner)
    local = build_task_runner("dask", dask_workers=3)
    assert isinstance(local, SharedApiDaskTaskRunner)
    assert local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["threads_per_worker"] == 1
    assert local.cluster_kwargs["processes"] is True
    remote = build_task_runner("dask", dask_address="tcp://127.0.0.1:8786")
    assert remote.address == "tcp://127.0.0.1:8786" and not remote.cluster_kwargs


def test_local_cluster_workers_report_to_the_harness_server(harness: str) -> None:
    servers_before = _server_processes()

    @flow(task_runner=build_task_runner("dask", dask_workers=2))
    def fan_out() -> list[dict[str, object]]:
        return _fan_out(6)

    state = fan_out(return_state=True)
    results = state.result()

    worker_pids = {result["pid"] for result in results}
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert {result["api_url"] for result in results} == {harness.rstrip("/")}
    assert {result["env_api_url"] for result in results} == {harness}
    assert not PREFECT_API_URL.value(), "the runner must not leak its setting past the flow"
    runs = _task_runs_of(state.state_details.flow_run_id, 6)
    assert sorted(run.state.type.value for run in runs) == ["COMPLETED"] * 6
    assert _server_processes() == servers_before


def test_existing_scheduler_workers_report_to_the_flow_server(harness: str) -> None:
    servers_before = _server_processes()
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())

        @flow(task_runner=build_task_runner("dask", dask_address=cluster.scheduler_address))
        def fan_out() -> list[dict[str, object]]:
            return _fan_out(2)

        results = fan_out()
        assert _server_processes() == servers_before
    assert {result["pid"] for result in results} == worker_pids
    assert {result["api_url"] for result in results} == {harness.rstrip("/")}
    assert {result["env_api_url"] for result in results} == {None}
