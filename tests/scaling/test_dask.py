"""The task runners: validation, and real Dask clusters whose workers report to the flow's API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
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


def test_runtime_settings_pick_the_runner() -> None:
    from destatic.runners import task_runner_for
    from destatic.settings import RuntimeSettings

    assert isinstance(task_runner_for(RuntimeSettings()), ThreadPoolTaskRunner)
    assert task_runner_for(RuntimeSettings(task_runner="dask", dask_workers=3)).cluster_kwargs["n_workers"] == 3
    assert task_runner_for(RuntimeSettings(task_runner="dask")).cluster_kwargs["n_workers"] == len(os.sched_getaffinity(0))
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})  # a process pinned to one CPU (taskset -c 0) gets one worker
    try:
        assert task_runner_for(RuntimeSettings(task_runner="dask")).cluster_kwargs["n_workers"] == 1
    finally:
        os.sched_setaffinity(0, allowed)
    remote = task_runner_for(RuntimeSettings(task_runner="dask", dask_address="tcp://127.0.0.1:8786"))
    assert remote.address == "tcp://127.0.0.1:8786"


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


# --- destatic's own batch on Dask: many files, one flow run, the steps fanned out

NOIZEUS = ("sp01_car_sn5.wav", "sp01_station_sn5.wav", "sp11_train_sn5.wav")


@pytest.fixture
def batch_inputs(media_dir: Path, tmp_path: Path) -> list[Path]:
    """Three real noisy sentences and a real video clip, copied into tmp_path."""
    names = [*(f"pairs/noizeus/{name}" for name in NOIZEUS), "video/bbaf2n.mpg"]
    if not all((media_dir / name).is_file() for name in names):
        pytest.skip(f"shared media lacks one of {names}")
    inputs = []
    for name in names:
        inputs.append(tmp_path / "in" / Path(name).name)
        inputs[-1].parent.mkdir(exist_ok=True)
        shutil.copyfile(media_dir / name, inputs[-1])
    return inputs


def _batch_runs() -> list[object]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["denoise-files"])), sort=FlowRunSort.START_TIME_DESC
        )


@pytest.mark.slow  # about 45 s; .ci/run runs it. The workers-report tests run flows on Dask in the default run
@pytest.mark.usefixtures("harness")
def test_cli_batch_on_a_local_cluster_of_two(batch_inputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.artifacts import Artifact
    from typer.testing import CliRunner

    from destatic.cli import app
    from destatic.workspace import report_key

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESTATIC_RUNTIME__DASK_WORKERS", "2")
    monkeypatch.setenv("DESTATIC_RUNTIME__SHORTCUT", "false")  # the re-run is to hit Prefect's cache on the cluster
    bad = tmp_path / "in" / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEnot really")
    out = tmp_path / "out"
    out.mkdir()
    command = ["run", *map(str, batch_inputs), str(bad), "-o", str(out), "--task-runner", "dask"]

    result = CliRunner().invoke(app, command)

    assert result.exit_code == 1, result.output
    assert "bad.wav" in result.output and "1 of 5 file(s) failed" in " ".join(result.output.split())
    assert bad.exists(), "run must not move the user's files"
    for source in batch_inputs:
        written = out / f"{source.stem}-clean{source.suffix}"
        assert written.is_file() and written.stat().st_size > 0, written
        assert Artifact.get(report_key(source)) is not None
    first = _batch_runs()[0]
    assert first.state.type.value == "FAILED" and "bad.wav" in first.state.message
    steps = _task_runs_of(first.id, 4 * 7)
    assert {run.state.type.value for run in steps if not run.name.startswith("extract_audio")} == {"COMPLETED"}

    again = CliRunner().invoke(app, command[:1] + command[1:5] + command[6:])
    assert again.exit_code == 0, again.output
    rerun = _batch_runs()[0]
    cached = _task_runs_of(rerun.id, 4 * 7)
    assert {run.state.name for run in cached if not run.name.startswith("deliver")} == {"Cached"}


@pytest.mark.slow
@pytest.mark.usefixtures("harness")
def test_batch_on_an_existing_scheduler_uses_both_workers(batch_inputs: list[Path], tmp_path: Path) -> None:
    from destatic.flows import run_batch
    from destatic.settings import load_settings

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        settings = load_settings(
            paths={"work": tmp_path / "work"},
            output={"mode": "audio", "format": "flac"},
            runtime={"task_runner": "dask", "dask_address": cluster.scheduler_address},
        )
        outputs = [tmp_path / "out" / f"{source.stem}.flac" for source in batch_inputs]
        with distributed.get_task_stream(client) as stream:
            rows = run_batch(batch_inputs, settings, outputs=outputs)
        workers = {record["worker"] for record in stream.data}
    assert [row["status"] for row in rows] == ["done"] * len(batch_inputs), rows
    assert [row["output"] for row in rows] == [str(path) for path in outputs]
    assert len(workers) == 2, "the steps should run on both Dask workers"


def test_dask_loads_only_when_a_dask_runner_is_built() -> None:
    code = (
        "import sys; import destatic.flows, destatic.runners as r\n"
        "before = 'distributed' in sys.modules\n"
        "r.build_task_runner('dask')\n"
        "print(before, 'distributed' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
